"""Progress bars for every long loop (tqdm; set ``TQDM_DISABLE=1`` to silence them)."""

import os

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar that refreshes at most once a second (keeps logs of ``dvc repro`` short)."""
    kwargs.setdefault("mininterval", 1.0)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs["disable"] = kwargs.get("disable", False) or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return tqdm(iterable, **kwargs)
