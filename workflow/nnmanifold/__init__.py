"""nnmanifold: map the manifold of neural networks with diffusion geometry.

Laid out by stage, as the rule files are: ``core`` (config, settings, paths, storage, plan, GPUs),
``zoo``, ``train``, ``geometry``, ``analysis``, ``report``, ``search``; ``steps`` holds one module
of workflow steps per rule file and ``cli`` is the command line over them.
"""
