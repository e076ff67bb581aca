"""The Oracle contract, re-exported from :mod:`edgezo.oracles.base` (where it lives, next to its implementations)."""

from .oracles.base import (
                           UINT32,
                           Batch,
                           CoordQueries,
                           Counters,
                           Oracle,
                           OracleError,
                           PathChoice,
                           Queries,
                           SeedQueries,
                           SeedUpdate,
                           batch_size_of,
)

__all__ = ["UINT32", "Batch", "CoordQueries", "Counters", "Oracle", "OracleError", "PathChoice", "Queries",
           "SeedQueries", "SeedUpdate", "batch_size_of"]
