"""Stage 2, ``shard``: images -> WebDataset ``.tar`` shards of L and ab cell indices.

What a sample holds is written down in :mod:`colorize_core.data.shard_format`.

Output layout: ``<out>/<split>/shard-000000.tar`` with a sidecar ``shard-000000.json`` that
records what went in, what was skipped (unreadable) or excluded (grayscale), and a fingerprint of
the inputs and parameters. A re-run keeps every shard whose fingerprint still matches, so an
interrupted run resumes where it stopped; shards are byte-identical for the same inputs.

Pixels are encoded by the compiled kernel of :mod:`colorize_core.quantize_kernel` in large runs
and by NumPy in small ones (:data:`COMPILED_MIN_PIXELS`): the same bytes either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from colorize_core.color import lab_from_srgb
from colorize_core.config import SPLITS, ShardParams
from colorize_core.data.sample import Record, read_list
from colorize_core.data.shard_format import (
    CELL_KEY,
    CLASS_KEY,
    INDEX_FILE,
    LIGHTNESS_KEY,
    META_KEY,
    SHARD_FORMAT,
    npy_buffer,
    npy_bytes,
    write_tar,
)
from colorize_core.device import available_cores
from colorize_core.images import GRAY_MODES, ImageError, load_rgb8
from colorize_core.io import atomic_write_csv, atomic_write_json, file_xxh128, remove_stale_temporaries
from colorize_core.progress import progress
from colorize_core.ab_grid import AbGrid
from colorize_core.quantize import srgb_lut
from colorize_core.quantize_kernel import encode_into, kernel_loaded, numba_available, warm_kernel

log = logging.getLogger(__name__)

#: Pixels per worker from which the shard stage encodes with the compiled kernel: loading it
#: (importing Numba, reading the kernel from its cache) takes about 0.4 s, and it saves about
#: 12 ns a pixel against NumPy (one 256 × 256 image: 0.15 ms against 0.95 ms with the checks and
#: copies). A run of the demo (400 images of 64 × 64) stays with NumPy.
COMPILED_MIN_PIXELS = 32_000_000

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
def far_from_gray(grid: int, max_chroma: float) -> tuple[np.ndarray, bytes]:
    """Per cell, 1 where every ab in it is more colourful than ``max_chroma``: as an array, and as
    a 256-byte translation table for uint8 cells."""
    far = (~AbGrid(grid).near_gray_cells(max_chroma)).astype(np.uint8)
    table = np.zeros(256, np.uint8)
    if len(far) <= 256:
        table[: len(far)] = far
    return far, table.tobytes()


def any_far_from_gray(cells: np.ndarray, grid: int, max_chroma: float) -> bool:
    """Whether some pixel's cell proves it more colourful than ``max_chroma``."""
    far, table = far_from_gray(grid, max_chroma)
    if cells.dtype == np.uint8:  # bytes.translate runs at memory speed
        return b"\x01" in cells.tobytes().translate(table)
    return bool(np.take(far, cells).any())


def encode_record(record: Record, key: str, params: ShardParams, compiled: bool = False) -> Outcome:
    """Decode, resize and encode one image (with the compiled kernel, or NumPy: the same bytes);
    never raises for a bad image."""
    try:
        rgb, mode = load_rgb8(record.path, params.size, params.max_pixels)  # (S, S, 3) uint8
    except ImageError as error:
        return Outcome(record, key, status="skipped_unreadable", reason=str(error))
    if mode in GRAY_MODES:
        return Outcome(record, key, status="excluded_grayscale", reason=f"{record.path}: grayscale file (mode {mode})")
    lut = srgb_lut(params.grid)
    if compiled:  # L and cells written straight into their .npy bytes
        lightness_npy, lightness = npy_buffer(rgb.shape[:2], np.float16)  # (S, S)
        cells_npy, cells = npy_buffer(rgb.shape[:2], lut.cell.dtype)  # (S, S)
        far, _ = far_from_gray(params.grid, params.grayscale_max_chroma)
        has_colour = encode_into(lut, np.ascontiguousarray(rgb), lightness, cells, far) > 0
    else:
        lightness, cells = lut.encode(rgb)  # each (S, S)
        has_colour = any_far_from_gray(cells, params.grid, params.grayscale_max_chroma)
        lightness_npy, cells_npy = npy_bytes(lightness), npy_bytes(cells)
    if not has_colour:
        # Every pixel sits in a cell near the gray axis: decide on the exact chroma (rare, so slow is fine).
        ab = lab_from_srgb(rgb.astype(np.float32) / 255)[..., 1:]
        max_chroma = float(np.hypot(ab[..., 0], ab[..., 1]).max())
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
        LIGHTNESS_KEY: lightness_npy,
        CELL_KEY: cells_npy,
        CLASS_KEY: str(record.class_index).encode(),
        META_KEY: json.dumps(meta, sort_keys=True).encode(),
    }
    return Outcome(record, key, sample=sample)


@dataclass(frozen=True)
class ShardJob:
    """One shard to write: its records, their keys, and where it goes."""

    split: str
    index: int
    records: list[Record]
    keys: list[str]
    fingerprint: str
    tar: Path
    sidecar: Path


def write_shard(job: ShardJob, params: ShardParams, progress_counter=None, compiled: bool = False) -> list[dict]:
    """Encode a shard's images and write its tar and sidecar atomically; returns its problems."""
    samples, problems = [], []
    for record, key in zip(job.records, job.keys):
        outcome = encode_record(record, key, params, compiled)
        if outcome.sample is not None:
            samples.append(outcome.sample)
        else:
            problems.append({"path": record.path, "status": outcome.status, "reason": outcome.reason})
        if progress_counter is not None:
            with progress_counter.get_lock():
                progress_counter.value += 1
    tar_xxh128 = write_tar(job.tar, samples)
    sidecar = {"fingerprint": job.fingerprint, "samples": len(samples), "problems": problems, "tar_xxh128": tar_xxh128}
    atomic_write_json(job.sidecar, sidecar)
    return problems


def planned_job(
    split: str, index: int, records: list[Record], keys: list[str], out_dir: Path, params: ShardParams
) -> tuple[ShardJob, bool]:
    """A shard's job, with the fingerprint of its inputs (every file read), and whether the shard
    that an earlier run left can be kept."""
    job = ShardJob(split, index, records, keys, fingerprint(records, params), *shard_paths(out_dir, split, index))
    return job, _is_done(job.tar, job.sidecar, job.fingerprint)


# Worker processes get the parameters, a shared image counter (for the progress bar) and the
# choice of encoder once; with the fork start method they also inherit the parent's sRGB look-up
# tables and compiled kernel.
_worker_state: dict = {}


def _init_worker(params: ShardParams, counter, compiled: bool) -> None:
    _worker_state.update(params=params, counter=counter, compiled=compiled)
    lut = srgb_lut(params.grid)
    if compiled:
        warm_kernel(lut)


def _plan_in_worker(chunk: tuple) -> tuple[ShardJob, bool]:
    return planned_job(*chunk, _worker_state["params"])


def _write_shard_in_worker(job: ShardJob) -> list[dict]:
    return write_shard(job, _worker_state["params"], _worker_state["counter"], _worker_state["compiled"])


def resolve_workers(workers: int) -> int:
    """0 means one worker per CPU core available to this process."""
    return workers if workers > 0 else available_cores()


def fingerprint(records: list[Record], params: ShardParams) -> str:
    """Hash of a shard's inputs: parameters, paths, labels, and each file's contents (never its
    modification time, so that every clone of the repository computes the same shards)."""
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
            file_id = file_xxh128(Path(record.path))
        except OSError:
            file_id = "missing"
        digest.update(f"\n{record.path}\t{record.synset}\t{record.class_index}\t{file_id}".encode())
    return digest.hexdigest()


def shard_paths(out_dir: Path, split: str, index: int) -> tuple[Path, Path]:
    stem = out_dir / split / f"shard-{index:06d}"
    return stem.with_suffix(".tar"), stem.with_suffix(".json")


def _is_done(tar: Path, sidecar: Path, expected: str) -> bool:
    """Whether a shard from an earlier run can be kept: same inputs, and its tar exactly the bytes
    that run wrote (a truncated or altered tar is rebuilt)."""
    if not (tar.is_file() and sidecar.is_file()):
        return False
    try:
        info = json.loads(sidecar.read_text())
        return info.get("fingerprint") == expected and info.get("tar_xxh128") == file_xxh128(tar)
    except (OSError, ValueError):
        return False


def run_shard(
    params: ShardParams, lists_dir: Path, out_dir: Path, report_dir: Path, compiled: bool | None = None
) -> dict:
    """Shard every split listed in ``lists_dir``; returns the per-split counts.

    Writes ``out_dir/<split>/shard-*.tar`` (+ sidecars), ``out_dir/index.json``,
    ``report_dir/shard.json`` (counts) and ``report_dir/shard_skipped.csv`` (one line per
    skipped or excluded file, with its reason). Each worker process hashes the inputs of whole
    shards, then writes whole shards, so no pixel data crosses between processes. ``compiled``
    chooses the encoder (the same bytes either way); None: the compiled kernel when Numba is
    installed and the run is large enough to pay for loading it (:data:`COMPILED_MIN_PIXELS`),
    or it is loaded already.
    """
    lists = {split: read_list(lists_dir / f"{split}.csv") for split in SPLITS}
    chunks = []  # (split, index, records, keys, out_dir) of every shard
    for split, records in lists.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir / split)
        n = params.samples_per_shard
        for index, start in enumerate(range(0, len(records), n)):
            chunk = records[start : start + n]
            chunks.append((split, index, chunk, [f"{i:06d}" for i in range(start, start + len(chunk))], out_dir))
        _remove_extra_shards(out_dir / split, keep=len(range(0, len(records), n)))
    total = sum(len(chunk[2]) for chunk in chunks)
    workers = min(resolve_workers(params.workers), len(chunks))
    if compiled is None:
        pixels_per_worker = total * params.size**2 / max(workers, 1)
        compiled = numba_available() and (kernel_loaded() or pixels_per_worker >= COMPILED_MIN_PIXELS)
    lut = srgb_lut(params.grid)  # built or read once in the parent; forked workers inherit it
    if compiled:
        warm_kernel(lut)  # likewise (each worker would otherwise load it on its first image)
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:
            context = multiprocessing.get_context(
                "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            )
            counter = context.Value("q", 0)
            pool = stack.enter_context(context.Pool(workers, _init_worker, (params, counter, compiled)))
        planned = pool.map(_plan_in_worker, chunks) if pool else [planned_job(*chunk, params) for chunk in chunks]
        todo = [job for job, done in planned if not done]
        done = total - sum(len(job.records) for job in todo)
        if done:
            log.info("shard: resuming, %d of %d images already in complete shards", done, total)
        with progress(total=total, initial=done, desc="shard", unit="img") as bar:
            if pool is None:
                for job in todo:  # problems: counted at the end, listed in shard_skipped.csv
                    write_shard(job, params, compiled=compiled)
                    bar.update(len(job.records))
            else:
                pending = [pool.apply_async(_write_shard_in_worker, (job,)) for job in todo]
                while pending:
                    pending[0].wait(timeout=0.5)
                    for result in [r for r in pending if r.ready()]:
                        result.get()  # re-raises a worker's exception
                        pending.remove(result)
                    bar.update(done + counter.value - bar.n)
    return _write_index_and_report([job for job, _ in planned], params, out_dir, report_dir)


def _remove_extra_shards(split_dir: Path, keep: int) -> None:
    """Delete shards left by an earlier run with more images than the current list."""
    for path in split_dir.glob("shard-*.*"):
        if path.suffix in (".tar", ".json") and int(path.stem.split("-")[1]) >= keep:
            path.unlink()


def _write_index_and_report(plan: list[ShardJob], params: ShardParams, out_dir: Path, report_dir: Path) -> dict:
    counts = {split: {"listed": 0, "written": 0, **dict.fromkeys(PROBLEMS, 0)} for split in SPLITS}
    shards: dict[str, list[str]] = {split: [] for split in SPLITS}
    problems = []
    for job in plan:
        info = json.loads(job.sidecar.read_text())
        counts[job.split]["listed"] += len(job.records)
        counts[job.split]["written"] += info["samples"]
        for problem in info["problems"]:
            counts[job.split][problem["status"]] += 1
            problems.append({"split": job.split, **problem})
        shards[job.split].append(job.tar.relative_to(out_dir).as_posix())
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
    if problems:
        log.info("shard: each skipped or excluded file and its reason: %s", report_dir / "shard_skipped.csv")
    return counts
