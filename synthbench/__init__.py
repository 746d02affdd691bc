"""synthbench: how useful is a generator's synthetic data for training a classifier?

``import synthbench`` stays light: heavy backends (torch, diffusers, timm) load
only when a plugin that needs them is looked up (see ``benchmark/registry.py``).

It also makes OpenMP's idle threads sleep instead of spin (``OMP_WAIT_POLICY=
PASSIVE``, unless the environment already sets a policy). torch's OpenMP pool
reads the policy once, when torch is first imported, so this only takes effect
when synthbench is imported first: the CLI always is. With the default (active)
policy, torch's threads spin for a busy core, and on a shared machine a
two-thread run was 2 to 20 times slower than a one-thread run. The policy
changes only how threads wait, never a result.
"""

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
