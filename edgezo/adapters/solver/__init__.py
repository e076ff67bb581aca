"""Solver-in-the-loop: train a correction network inside a black-box scientific solver.

* ``burgers`` — a coarse finite-volume solver for 1-D viscous Burgers (numpy,
  the black box), its fine-resolution reference and a differentiable torch
  twin of the same scheme (for the first-order baseline);
* ``loop`` — :class:`~edgezo.adapters.solver.loop.SolverInTheLoop`: rollouts
  ``u_{t+1} = C_θ(S(u_t))`` of any numpy solver step S with a torch corrector,
  q perturbed correctors advanced by one solver call per time step;
* ``oracle`` — :class:`~edgezo.adapters.solver.oracle.SolverOracle`: the
  Oracle contract over those rollouts, so the engine's estimators and trainer
  train the corrector;
* ``task`` — the recipe task ``"solver"`` (``burgers-correction``).
"""
