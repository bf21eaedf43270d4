"""nnmanifold: map the manifold of neural networks with diffusion geometry."""

__version__ = "0.1.0"


class UserError(Exception):
    """A problem the user can fix (config, data, a broken file); shown without a traceback."""
