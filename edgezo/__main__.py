"""``python -m edgezo`` is the ``edgezo`` command (also what ``torchrun -m edgezo`` runs)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
