"""Shared fixtures: a private cache folder and a folder of awkward images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import write_image_zoo

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Build the sRGB look-up tables afresh in a session folder, never from the user's cache."""
    folder = tmp_path_factory.mktemp("colorize-cache")
    os.environ["COLORIZE_CACHE"] = str(folder)
    yield folder


@pytest.fixture
def image_zoo(tmp_path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "zoo"
    return folder, write_image_zoo(folder)
