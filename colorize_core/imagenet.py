"""The 1000 ImageNet-1k classes: synsets in class-index order and their names.

The order is that of ILSVRC's ``LOC_synset_mapping.txt`` (shipped in ``resources/``), which is the
output order of torchvision's and timm's ImageNet classifiers.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from colorize_core.constants import SYNSET_MAPPING_FILE


def parse_synset_mapping(text: str) -> tuple[list[str], list[str]]:
    """``LOC_synset_mapping.txt`` text -> (synsets, names) in class-index order."""
    synsets, names = [], []
    for line in text.splitlines():
        if line.strip():
            synset, _, name = line.strip().partition(" ")
            synsets.append(synset)
            names.append(name)
    return synsets, names


@lru_cache(maxsize=1)
def _mapping() -> tuple[list[str], list[str]]:
    text = resources.files("colorize_core.resources").joinpath(SYNSET_MAPPING_FILE).read_text()
    return parse_synset_mapping(text)


def synsets() -> list[str]:
    return _mapping()[0]


def class_index(synset: str) -> int:
    """Class index of a synset, or -1 when it is not one of the 1000 classes."""
    return _index_of().get(synset, -1)


@lru_cache(maxsize=1)
def _index_of() -> dict[str, int]:
    return {synset: i for i, synset in enumerate(synsets())}


def class_name(index: int) -> str:
    """Short name of a class (the first of its synonyms), e.g. 285 -> 'Egyptian cat'."""
    return _mapping()[1][index].split(",")[0] if 0 <= index < 1000 else "unknown"
