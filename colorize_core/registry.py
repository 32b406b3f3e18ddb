"""The names a parameter may choose (``train.arch``, ``evaluate.classifier``), each bound to the
code that builds it.

The tables live on the bottom floor so that :mod:`colorize_core.config` can validate a name
without importing the networks and classifiers above it; a builder is imported on first use
(``"module:attribute"``, as entry points do).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping


@dataclass(frozen=True)
class Registry:
    kind: str  # what the names are, for messages: "architecture"
    targets: Mapping[str, str]  # name -> "package.module:attribute"

    def __contains__(self, name: object) -> bool:
        return name in self.targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.targets)

    def __len__(self) -> int:
        return len(self.targets)

    def check(self, name: str) -> None:
        """Raise ValueError naming the known entries unless ``name`` is one."""
        if name not in self.targets:
            raise ValueError(f"unknown {self.kind} {name!r} (known: {', '.join(self.targets)})")

    def load(self, name: str) -> Any:
        """The builder registered as ``name`` (imported now)."""
        self.check(name)
        module, attribute = self.targets[name].split(":")
        return getattr(importlib.import_module(module), attribute)


#: Colorization networks (:mod:`colorize_core.model`): constructor(ModelConfig, pretrained) -> nn.Module.
ARCHITECTURES = Registry(
    "architecture",
    {
        "eccv16": "colorize_core.model:eccv16",
        "efficientnet_lite1_unet": "colorize_core.model:efficientnet_lite1_unet",
        "efficientnet_lite2_unet": "colorize_core.model:efficientnet_lite2_unet",
        "efficientnet_lite2_unet_global": "colorize_core.model:efficientnet_lite2_unet_global",
    },
)

#: The architectures whose encoder is ImageNet-pretrained (can be frozen or fine-tuned).
PRETRAINED_ARCHITECTURES = ("efficientnet_lite1_unet", "efficientnet_lite2_unet", "efficientnet_lite2_unet_global")

#: ImageNet classifiers that judge colorizations (:mod:`colorize_core.evaluate.classifiers`):
#: loader(device, vgg16_weights) -> Classifier.
CLASSIFIERS = Registry(
    "classifier",
    {
        "efficientnet_lite0": "colorize_core.evaluate.classifiers:efficientnet_lite0",
        "efficientnet_lite1": "colorize_core.evaluate.classifiers:efficientnet_lite1",
        "efficientnet_lite2": "colorize_core.evaluate.classifiers:efficientnet_lite2",
        "vgg16": "colorize_core.evaluate.classifiers:vgg16",
    },
)
