"""Stage 2, ``shard``: images -> WebDataset ``.tar`` shards of L and ab cell indices.

Per sample (key = the image's position in its split list, ``000042``):

- ``lightness.npy``: CIE L* of the image warped to ``size`` × ``size``, (size, size) float16;
- ``ab_cell.npy``: the ab cell of every pixel on the *full* quantization grid, (size, size)
  uint8 (uint16 for grids of more than 256 cells), independent of the histogram's pruning;
- ``cls``: the ImageNet class index as text (-1 when unknown);
- ``json``: {"path", "synset", "class_index"}.

Output layout: ``<out>/<split>/shard-000000.tar`` with a sidecar ``shard-000000.json`` that
records what went in, what was skipped (unreadable) or excluded (grayscale), and a fingerprint of
the inputs and parameters. A re-run keeps every shard whose fingerprint still matches, so an
interrupted run resumes where it stopped; shards are byte-identical for the same inputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import webdataset as wds

from colorize_core.config import SPLITS, ShardParams
from colorize_core.data.sample import Record, read_list
from colorize_core.color import lab_from_srgb
from colorize_core.images import GRAY_MODES, ImageError, load_rgb8
from colorize_core.io import atomic_output, atomic_write_csv, atomic_write_json, remove_stale_temporaries
from colorize_core.progress import progress
from colorize_core.quantize import AbGrid, srgb_lut

log = logging.getLogger(__name__)

#: Bump when the sample format changes, so old shards are rebuilt.
SHARD_FORMAT = 1
LIGHTNESS_KEY = "lightness.npy"
CELL_KEY = "ab_cell.npy"
CLASS_KEY = "cls"
META_KEY = "json"
INDEX_FILE = "index.json"
#: What can become of an image instead of being written: unreadable (skipped), a grayscale file
#: (mode L, LA, 1, I;16), or a colour file without colour (Zhang's mask: |ab| never above 5).
PROBLEMS = ("skipped_unreadable", "excluded_grayscale", "excluded_no_chroma")


@dataclass(frozen=True)
class Outcome:
    """What became of one listed image."""

    record: Record
    key: str
    sample: dict | None = None  # the encoded sample, when written
    status: str = "written"  # or one of PROBLEMS
    reason: str = ""


@lru_cache(maxsize=8)
def near_gray_cells(grid: int, max_chroma: float) -> np.ndarray:
    return AbGrid(grid).near_gray_cells(max_chroma)


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)
    return stream.getvalue()


def encode_record(record: Record, key: str, params: ShardParams) -> Outcome:
    """Decode, resize and encode one image; never raises for a bad image."""
    try:
        rgb, mode = load_rgb8(record.path, params.size, params.max_pixels)  # (S, S, 3) uint8
    except ImageError as error:
        return Outcome(record, key, status="skipped_unreadable", reason=str(error))
    if mode in GRAY_MODES:
        return Outcome(record, key, status="excluded_grayscale", reason=f"{record.path}: grayscale file (mode {mode})")
    lut = srgb_lut(params.grid)
    lightness, cells = lut.encode(rgb)  # each (S, S)
    if near_gray_cells(params.grid, params.grayscale_max_chroma)[cells].all():
        # Every pixel sits in a cell near the gray axis: decide on the exact chroma (rare, so slow is fine).
        max_chroma = float(np.hypot(*np.moveaxis(lab_from_srgb(rgb.astype(np.float32) / 255)[..., 1:], -1, 0)).max())
        if max_chroma <= params.grayscale_max_chroma:
            return Outcome(
                record,
                key,
                status="excluded_no_chroma",
                reason=f"{record.path}: no colour (mode {mode}, max |ab| = {max_chroma:.1f} "
                f"<= grayscale_max_chroma {params.grayscale_max_chroma})",
            )
    meta = {"path": record.path, "synset": record.synset, "class_index": record.class_index}
    sample = {
        "__key__": key,
        LIGHTNESS_KEY: npy_bytes(lightness),
        CELL_KEY: npy_bytes(cells),
        CLASS_KEY: str(record.class_index).encode(),
        META_KEY: json.dumps(meta, sort_keys=True).encode(),
    }
    return Outcome(record, key, sample=sample)


# Worker processes read the parameters from here; with the fork start method they also inherit
# the sRGB look-up table that the parent built, instead of building their own.
_worker_params: ShardParams | None = None


def _init_worker(params: ShardParams) -> None:
    global _worker_params
    _worker_params = params
    srgb_lut(params.grid)


def _encode_in_worker(job: tuple[Record, str]) -> Outcome:
    return encode_record(*job, _worker_params)


def resolve_workers(workers: int) -> int:
    """0 means one worker per CPU core available to this process."""
    if workers > 0:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fingerprint(records: list[Record], params: ShardParams) -> str:
    """Hash of a shard's inputs: parameters, paths, labels, and each file's size and mtime."""
    digest = hashlib.sha256()
    settings = {
        "format": SHARD_FORMAT,
        "size": params.size,
        "grid": params.grid,
        "max_pixels": params.max_pixels,
        "grayscale_max_chroma": params.grayscale_max_chroma,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for record in records:
        try:
            stat = os.stat(record.path)
            file_id = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            file_id = "missing"
        digest.update(f"\n{record.path}\t{record.synset}\t{record.class_index}\t{file_id}".encode())
    return digest.hexdigest()


def write_tar(path: Path, samples: list[dict]) -> None:
    """Write samples to a WebDataset tar with fixed metadata, so equal samples give equal bytes."""
    with atomic_output(path, "wb") as f:
        writer = wds.TarWriter(f, user="", group="", mtime=0, encoder=False)
        for sample in samples:
            writer.write(sample)
        writer.close()


def shard_paths(out_dir: Path, split: str, index: int) -> tuple[Path, Path]:
    stem = out_dir / split / f"shard-{index:06d}"
    return stem.with_suffix(".tar"), stem.with_suffix(".json")


def _is_done(tar: Path, sidecar: Path, expected: str) -> bool:
    if not (tar.is_file() and sidecar.is_file()):
        return False
    try:
        return json.loads(sidecar.read_text()).get("fingerprint") == expected
    except (OSError, ValueError):
        return False


def _encode_all(jobs: list[tuple[Record, str]], params: ShardParams, pool) -> Iterator[Outcome]:
    if pool is None:
        return (encode_record(record, key, params) for record, key in jobs)
    return pool.imap(_encode_in_worker, jobs, chunksize=8)


def run_shard(params: ShardParams, lists_dir: Path, out_dir: Path, report_dir: Path) -> dict:
    """Shard every split listed in ``lists_dir``; returns the per-split counts.

    Writes ``out_dir/<split>/shard-*.tar`` (+ sidecars), ``out_dir/index.json``,
    ``report_dir/shard.json`` (counts) and ``report_dir/shard_skipped.csv`` (one line per
    skipped or excluded file, with its reason).
    """
    workers = resolve_workers(params.workers)
    lists = {split: read_list(lists_dir / f"{split}.csv") for split in SPLITS}
    plan = []  # (split, shard index, records, keys, fingerprint)
    for split, records in lists.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir / split)
        n = params.samples_per_shard
        for index, start in enumerate(range(0, len(records), n)):
            chunk = records[start : start + n]
            keys = [f"{i:06d}" for i in range(start, start + len(chunk))]
            plan.append((split, index, chunk, keys, fingerprint(chunk, params)))
        _remove_extra_shards(out_dir / split, keep=len(range(0, len(records), n)))

    todo = [p for p in plan if not _is_done(*shard_paths(out_dir, p[0], p[1]), p[4])]
    total = sum(len(p[2]) for p in plan)
    done = total - sum(len(p[2]) for p in todo)
    if done:
        log.info("shard: resuming, %d of %d images already in complete shards", done, total)
    srgb_lut(params.grid)  # build once in the parent; forked workers inherit it
    pool = None
    if workers > 1 and todo:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(workers, _init_worker, (params,))
    try:
        with progress(total=total, initial=done, desc="shard", unit="img") as bar:
            for split, index, chunk, keys, digest in todo:
                samples, problems = [], []
                for outcome in _encode_all(list(zip(chunk, keys)), params, pool):
                    if outcome.sample is not None:
                        samples.append(outcome.sample)
                    else:
                        problems.append({"path": outcome.record.path, "status": outcome.status, "reason": outcome.reason})
                        bar.write(f"{outcome.status}: {outcome.reason}")
                    bar.update()
                tar, sidecar = shard_paths(out_dir, split, index)
                write_tar(tar, samples)
                atomic_write_json(sidecar, {"fingerprint": digest, "samples": len(samples), "problems": problems})
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return _write_index_and_report(plan, params, out_dir, report_dir)


def _remove_extra_shards(split_dir: Path, keep: int) -> None:
    """Delete shards left by an earlier run with more images than the current list."""
    for path in split_dir.glob("shard-*.*"):
        if path.suffix in (".tar", ".json") and int(path.stem.split("-")[1]) >= keep:
            path.unlink()


def _write_index_and_report(plan: list, params: ShardParams, out_dir: Path, report_dir: Path) -> dict:
    counts = {split: {"listed": 0, "written": 0, **dict.fromkeys(PROBLEMS, 0)} for split in SPLITS}
    shards: dict[str, list[str]] = {split: [] for split in SPLITS}
    problems = []
    for split, index, chunk, _keys, _digest in plan:
        tar, sidecar = shard_paths(out_dir, split, index)
        info = json.loads(sidecar.read_text())
        counts[split]["listed"] += len(chunk)
        counts[split]["written"] += info["samples"]
        for problem in info["problems"]:
            counts[split][problem["status"]] += 1
            problems.append({"split": split, **problem})
        shards[split].append(tar.relative_to(out_dir).as_posix())
    index = {
        "format": SHARD_FORMAT,
        "size": params.size,
        "grid": params.grid,
        "splits": {split: {"shards": shards[split], "samples": counts[split]["written"]} for split in SPLITS},
    }
    atomic_write_json(out_dir / INDEX_FILE, index)
    atomic_write_json(report_dir / "shard.json", counts)
    atomic_write_csv(
        report_dir / "shard_skipped.csv",
        ("split", "status", "path", "reason"),
        ((p["split"], p["status"], p["path"], p["reason"]) for p in problems),
    )
    for split in SPLITS:
        c = counts[split]
        log.info(
            "shard: %s: %d listed, %d written, %d skipped (unreadable), %d excluded (grayscale files), "
            "%d excluded (colour files without colour)",
            split,
            c["listed"],
            c["written"],
            *(c[problem] for problem in PROBLEMS),
        )
    return counts


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
