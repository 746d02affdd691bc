"""The plugin catalogue: one :class:`~synthbench.benchmark.registry.Registry` per
kind, with the built-ins as ``name -> "module:Class"`` strings (imported on first
lookup) and the entry-point group third-party packages register under.

A new built-in adapter, protocol or dataset is one file in ``generators/``,
``protocols/`` or ``benchmark/datasets.py`` plus one line here. The harness
(``benchmark/``) reaches plugins only through these registries, never by import.
"""

from __future__ import annotations

from synthbench.benchmark.registry import Registry

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
    base="synthbench.benchmark.datasets:DatasetLoader",
    wrap="synthbench.benchmark.validate:checked_dataset_loader",  # an installed dataset's load() is checked
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
        "samples": "synthbench.generators.samples:SamplesGenerator",
    },
    base="synthbench.generators.base:Generator",
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
        "copies": "synthbench.protocols.copies:CopiesProtocol",
    },
    base="synthbench.protocols.base:Protocol",
)
