"""synthbench: how useful is a generator's synthetic data for training a classifier?

``import synthbench`` stays light: heavy backends (torch, diffusers, timm) load
only when a plugin that needs them is looked up (see ``benchmark/registry.py``).
"""

__version__ = "0.1.0"
