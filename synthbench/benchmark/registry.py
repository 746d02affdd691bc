"""One generic, lazy and loud plugin registry for datasets, generators and protocols.

Built-ins are a ``name -> "module:attribute"`` map, imported only on lookup, so
``import synthbench`` never imports diffusers. Third-party plugins register under
the entry-point groups ``synthbench.datasets``, ``synthbench.generators`` and
``synthbench.protocols``. An unknown name fails with the known names and a
"did you mean"; a plugin that fails to import fails loudly instead of vanishing;
two plugins with the same name are rejected.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from synthbench.errors import UserError


class Registry:
    """Name -> plugin class, built-ins first, then entry points of ``group``."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._targets: dict[str, str] = dict(builtins)
        self._origin: dict[str, str] = {name: "built-in" for name in builtins}
        self._loaded: dict[str, Any] = {}
        self._scanned = False

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in entry_points(group=self.group):
            if ep.name in self._targets:
                raise UserError(
                    f"Two {self.kind} plugins are named {ep.name!r}: the "
                    f"{self._origin[ep.name]} one and {ep.value!r} from the entry point "
                    f"group {self.group!r}. Rename one of them (uninstall the package "
                    f"that registers {ep.value!r}, or change its entry-point name)."
                )
            self._targets[ep.name] = ep.value
            self._origin[ep.name] = f"entry point ({ep.dist.name if ep.dist else ep.value})"

    def register(self, name: str, target: str | type) -> None:
        """Add a plugin at run time (tests, notebooks). Same-name registration fails."""
        self._scan_entry_points()
        if name in self._targets or name in self._loaded:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if isinstance(target, str):
            self._targets[name] = target
        else:
            self._targets[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = target
        self._origin[name] = "registered at run time"

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._loaded.pop(name, None)
        self._origin.pop(name, None)

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._targets)

    def origin(self, name: str) -> str:
        self._scan_entry_points()
        return self._origin[name]

    def get(self, name: str) -> Any:
        """The plugin class for ``name``, imported now if it was not yet."""
        self._scan_entry_points()
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._targets:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: "
                f"{', '.join(known)}. `synthbench list {self.kind}s` describes each."
            )
        target = self._targets[name]
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
            obj = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # loud: a broken plugin must never vanish silently
            raise UserError(
                f"The {self.kind} plugin {name!r} ({target}, {self._origin[name]}) failed "
                f"to import: {type(exc).__name__}: {exc}. Install what it needs or fix "
                f"the package that provides it."
            ) from exc
        self._loaded[name] = obj
        return obj


DATASETS = Registry(
    "dataset",
    "synthbench.datasets",
    {
        "digits": "synthbench.benchmark.datasets:Digits",
        "fashion-mnist": "synthbench.benchmark.datasets:FashionMNIST",
        "mnist": "synthbench.benchmark.datasets:MNIST",
        "cifar10": "synthbench.benchmark.datasets:CIFAR10",
        "cifar100": "synthbench.benchmark.datasets:CIFAR100",
        "imagefolder": "synthbench.benchmark.datasets:ImageFolder",
    },
)

GENERATORS = Registry(
    "generator",
    "synthbench.generators",
    {
        "real": "synthbench.generators.real:RealGenerator",
        "edm": "synthbench.generators.edm:EDMGenerator",
        "stylegan3": "synthbench.generators.stylegan3:StyleGAN3Generator",
        "sd": "synthbench.generators.sd:StableDiffusionGenerator",
        "realfake": "synthbench.generators.realfake:RealFakeGenerator",
        "ddpm": "synthbench.generators.ddpm:DDPMGenerator",
    },
)

PROTOCOLS = Registry(
    "protocol",
    "synthbench.protocols",
    {
        "replace": "synthbench.protocols.replace:ReplaceProtocol",
        "augment": "synthbench.protocols.augment:AugmentProtocol",
        "scaleup": "synthbench.protocols.scaleup:ScaleUpProtocol",
        "recon": "synthbench.protocols.recon:ReconProtocol",
        "longtail": "synthbench.protocols.longtail:LongTailProtocol",
        "ood": "synthbench.protocols.ood:OODProtocol",
        "mia": "synthbench.protocols.mia:MIAProtocol",
        "fidelity": "synthbench.protocols.fidelity:FidelityProtocol",
        "detect": "synthbench.protocols.detect:DetectProtocol",
    },
)
