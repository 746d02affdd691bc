"""synthbench: how useful is a generator's synthetic data for training a classifier?

``import synthbench`` stays light: heavy backends (torch, diffusers, timm) load
only when a plugin that needs them is looked up (see ``benchmark/registry.py``).

It also sets two process-wide defaults that change where time goes, never a
result, and yield to a user's own settings (``process_defaults.py``): OpenMP's
idle threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), and
glibc's allocator keeps freed memory for reuse instead of faulting a step's
activations in again on every call.
"""

from synthbench.process_defaults import keep_freed_memory as _keep_freed_memory
from synthbench.process_defaults import set_wait_policy as _set_wait_policy

_set_wait_policy()
_keep_freed_memory()

__version__ = "0.1.0"
