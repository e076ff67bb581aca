"""HTTP services around black-box robustification (FastAPI + uvicorn).

* :mod:`.model_server` — ``edgezo serve model``: a classifier behind a query
  API with API keys and per-key query budgets (probabilities or labels only).
* :mod:`.client` — :class:`HttpBlackBox`, that endpoint as an engine black box.
* :mod:`.robustify_server` — ``edgezo serve robustify``: submit / status /
  artifacts / cancel for ZO-AE-DS jobs, persisted in SQLite (:mod:`.jobs`) and
  run by a resumable worker thread (:mod:`.worker`).
* :mod:`.auth` — API keys and bearer tokens from the environment or a TOML file.
* :mod:`.runner` — uvicorn in the foreground or on a background thread.

Needs the ``serve`` extra (``pip install edgezo[serve]``).
"""
