"""Scientific solvers used by the solver-in-the-loop adapter.

``edgezo.adapters.solver.burgers`` holds a coarse finite-volume solver for the
1-D viscous Burgers equation (numpy), its fine-resolution reference and a
differentiable torch twin of the same scheme.
"""
