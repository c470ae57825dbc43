"""repro's shared library: data, models, optimizers, training loop, configs and results tooling.

Papers import ``shared``; ``shared`` never imports papers.
"""
__version__ = "0.1.0"
