"""What a shard holds, and the one place that writes and reads its bytes.

A shard is a WebDataset ``.tar``; per sample (key = the image's position in its split list,
``000042``):

- ``lightness.npy``: CIE L* of the image warped to ``size`` × ``size``, (size, size) float16;
- ``ab_cell.npy``: the ab cell of every pixel on the *full* quantization grid, (size, size)
  uint8 (uint16 for grids of more than 256 cells), independent of the histogram's pruning;
- ``cls``: the ImageNet class index as text (-1 when unknown);
- ``json``: {"path", "synset", "class_index"}.

``<shards>/index.json`` lists each split's shards (:func:`read_index`, :func:`shard_urls`).
"""

from __future__ import annotations

import io
import json
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import xxhash

from colorize_core.io import atomic_output

#: Bump when the sample format changes, so old shards are rebuilt.
SHARD_FORMAT = 3  # 2: content-addressed fingerprints, a checksum of each tar in its sidecar; 3: XXH3-128
LIGHTNESS_KEY = "lightness.npy"
CELL_KEY = "ab_cell.npy"
CLASS_KEY = "cls"
META_KEY = "json"
INDEX_FILE = "index.json"


@lru_cache(maxsize=16)
def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array(stream, np.zeros(shape, dtype), allow_pickle=False)
    data = stream.getvalue()
    return data[: len(data) - int(np.prod(shape)) * np.dtype(dtype).itemsize]


def npy_bytes(array: np.ndarray) -> bytes:
    """The array in NumPy's .npy format (the header is built once per shape and dtype)."""
    array = np.ascontiguousarray(array)
    return _npy_header(array.shape, array.dtype.str) + array.tobytes()


def npy_buffer(shape: tuple[int, ...], dtype) -> tuple[memoryview, np.ndarray]:
    """An uninitialised array's .npy bytes, and a writable view of its data: fill the whole array,
    then write the bytes (no copy in between; :func:`npy_bytes` gives the same bytes for the same
    array)."""
    header = _npy_header(shape, np.dtype(dtype).str)
    buffer = np.empty(len(header) + int(np.prod(shape)) * np.dtype(dtype).itemsize, np.uint8)
    buffer[: len(header)] = np.frombuffer(header, np.uint8)  # a multiple of 64 bytes: the data stay aligned
    return memoryview(buffer), buffer[len(header) :].view(dtype).reshape(shape)


def tar_header(name: str, size: int) -> bytes:
    """A member's ustar header with fixed owner, mode and time (the same bytes on every run):
    ``tarfile``'s own, built once per size and given the name and its checksum (about ten times
    faster than building each with ``tarfile``)."""
    encoded = name.encode()
    if len(encoded) > tarfile.LENGTH_NAME:  # ustar splits long names: leave that to tarfile
        return _tarfile_header(name, size)
    template, checksum_without_name = _nameless_header(size)
    header = bytearray(template)
    header[: len(encoded)] = encoded
    header[_CHECKSUM_FIELD] = b"%06o\0" % (checksum_without_name + sum(encoded))  # as tarfile writes it
    return bytes(header)


#: Where a ustar header's checksum (6 octal digits and NUL, then a space) is.
_CHECKSUM_FIELD = slice(148, 155)


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    return info.tobuf(tarfile.USTAR_FORMAT)


@lru_cache(maxsize=64)
def _nameless_header(size: int) -> tuple[bytes, int]:
    """The header of a member of ``size`` bytes with an empty name, and its checksum without one
    (the unsigned sum of the header's bytes, the checksum field counted as spaces)."""
    header = _tarfile_header("", size)
    return header, sum(header[: _CHECKSUM_FIELD.start]) + 8 * ord(" ") + sum(header[_CHECKSUM_FIELD.start + 8 :])


def write_tar(path: Path, samples: list[dict]) -> str:
    """Write samples as a WebDataset tar (members ``<key>.<field>``) with fixed metadata, so equal
    samples give equal bytes; returns the tar's XXH3-128 (hex, as :func:`io.file_xxh128`), computed
    on the way.

    Headers are written by hand (ustar, via ``tarfile.TarInfo``), which is several times faster
    than ``tarfile.addfile`` for these large members."""
    digest = xxhash.xxh3_128()

    def write(data) -> None:
        f.write(data)
        digest.update(data)

    # No fsync (4 % of the stage's time at 128 samples a shard): the sidecar, written durably after
    # the tar, records its checksum, so a tar torn by a power cut is rebuilt on the next run.
    with atomic_output(path, "wb", durable=False) as f:
        for sample in samples:
            for field, data in sample.items():
                if field != "__key__":
                    write(tar_header(f"{sample['__key__']}.{field}", len(data)))
                    write(data)  # written apart: joining would copy these large members
                    write(bytes(-len(data) % tarfile.BLOCKSIZE))
        write(bytes(2 * tarfile.BLOCKSIZE))  # end of archive
    return digest.hexdigest()


def read_index(shards_dir: Path) -> dict:
    """The shard index written by :func:`run_shard`."""
    path = Path(shards_dir) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shard index; run the shard stage first")
    return json.loads(path.read_text())


def shard_urls(shards_dir: Path, split: str) -> list[str]:
    """Paths of a split's shards, in order."""
    index = read_index(shards_dir)
    return [str(Path(shards_dir) / name) for name in index["splits"][split]["shards"]]


def with_arrays(sample: dict) -> dict:
    """A sample's raw tar members with L (S, S) float16 and the ab cells (S, S) loaded as arrays."""
    import webdataset as wds  # here, not at the top: it imports torch, which writing shards never needs

    return {**sample, LIGHTNESS_KEY: wds.autodecode.npy_loads(sample[LIGHTNESS_KEY]),
            CELL_KEY: wds.autodecode.npy_loads(sample[CELL_KEY])}  # fmt: skip


class ShardError(ValueError):
    """A shard that cannot be read; the message names it and says how to rebuild it."""


def raise_shard_error(error: Exception) -> bool:
    """WebDataset handler: a damaged tar becomes one :class:`ShardError` naming the file."""
    url = next((a for a in error.args if isinstance(a, str) and a.endswith(".tar")), "a shard")
    raise ShardError(
        f"{url}: damaged shard ({type(error).__name__}: {error.args[0] if error.args else error}); "
        "`dvc repro` rebuilds it (the shard stage checks every shard's checksum)"
    ) from None


def read_samples(urls: Iterable[str]) -> Iterator[dict]:
    """Every sample of the shards, in order, with its arrays loaded (:func:`with_arrays`).

    Raises
    ------
    ShardError
        naming a shard that is truncated or not a tar.
    """
    import webdataset as wds  # see with_arrays

    pipeline = wds.DataPipeline(wds.SimpleShardList(list(urls)), wds.tarfile_to_samples(handler=raise_shard_error))
    return map(with_arrays, pipeline)
