"""The bounded pipeline of inference/pipeline.py: batches from the order alone, results whatever the
threads' timing, memory bounded by the queues, errors raised, and `colorize photo` on a folder
giving the bytes of one image at a time."""

import platform
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import colourful_rgb, exif_rotated_jpeg, tiny_checkpoint
from PIL import Image

from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.photo import PhotoOptions, colorize_files, encode, metadata_of
from colorize_core.inference.pipeline import Batcher, PipelineSizes, run_pipeline


def batches_of(keys: list[str], batch_size: int, max_held: int) -> list[list[int]]:
    batcher = Batcher(batch_size, max_held)
    out = [[i for _, i in batch] for i, key in enumerate(keys) for batch in batcher.add(key, (key, i))]
    return out + [[i for _, i in batch] for batch in batcher.drain()]


def test_batches_group_one_key_and_follow_the_order():
    assert batches_of(list("aabacbbcad"), 1, 2) == [[i] for i in range(10)]  # one at a time, in order
    # by hand: a group leaves when it holds 3; the rest at the end, in the order each group began
    assert batches_of(list("abcabcabc"), 3, 100) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    # more than 4 waiting: the group whose first item is the oldest leaves as it is
    assert batches_of(list("abcabcabc"), 3, 4) == [[0, 3], [1, 4], [2, 5, 8], [6], [7]]
    assert batches_of(list("aabacbbcad"), 3, 100) == [[0, 1, 3], [2, 5, 6], [4, 7], [8], [9]]


def simulated(keys: list[str], sizes: PipelineSizes, jitter: bool, seed: int = 0):
    """Run items through the pipeline with random sleeps; what infer saw, what finish wrote, and the
    most items alive at once (read started, finish not yet returned)."""
    rng = random.Random(seed)
    delays = [tuple(rng.random() * 0.004 for _ in range(3)) if jitter else (0, 0, 0) for _ in keys]
    lock, alive, most = threading.Lock(), [0], [0]
    seen, written, finishing = [], {}, []

    def read(i):
        with lock:
            alive[0] += 1
            most[0] = max(most[0], alive[0])
        time.sleep(delays[i][0])
        if keys[i] == "x":  # dropped: its read was its whole life
            with lock:
                alive[0] -= 1
            return None
        return i

    def infer(batch):
        with lock:
            seen.append(list(batch))
        time.sleep(delays[batch[0]][2])  # with several streams, a later batch may end first
        return [i * 10 for i in batch]

    def finish(i, result):
        with lock:
            finishing.append(i)
        time.sleep(delays[i][1])
        written[i] = result
        with lock:
            alive[0] -= 1

    done = []
    run_pipeline(range(len(keys)), read, lambda i: keys[i], infer, finish, sizes, lambda: done.append(1))
    assert len(done) == len(keys)  # every item once, the dropped ones too
    return seen, written, most[0], finishing


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("streams", [1, 2])
def test_results_do_not_depend_on_the_threads_timing(batch_size, streams):
    keys = list("abaxbcaabcxbbacab" * 3)
    sizes = PipelineSizes(batch_size=batch_size, readers=3, writers=3, streams=streams)
    calm = simulated(keys, PipelineSizes(batch_size=batch_size, readers=1, writers=1), jitter=False)
    for seed in range(3):
        busy = simulated(keys, sizes, jitter=True, seed=seed)
        # the same batches; with several streams their network passes may start in either order
        assert (busy[0] if streams == 1 else sorted(busy[0])) == (calm[0] if streams == 1 else sorted(calm[0]))
        assert busy[1] == calm[1] == {i: i * 10 for i, k in enumerate(keys) if k != "x"}
    expected = batches_of([k for k in keys if k != "x"], batch_size, sizes.held)
    kept = [i for i, k in enumerate(keys) if k != "x"]
    assert calm[0] == [[kept[j] for j in batch] for batch in expected]


@pytest.mark.parametrize("streams", [1, 2])
def test_memory_is_bounded_by_the_queues(streams):
    """However long the input, at most read-ahead (+ the one the feeder is queueing) + held +
    write-behind items (+ the batches being inferred and one queued behind each) are alive at once."""
    keys = list("abcd" * 50)
    sizes = PipelineSizes(batch_size=2, readers=2, writers=2, read_ahead=3, max_held=4, write_behind=2, streams=streams)
    _, written, most, _ = simulated(keys, sizes, jitter=True)
    assert len(written) == 200
    assert sizes.batches_in_flight == 2 * streams
    assert most <= sizes.reads + 1 + sizes.held + sizes.writes + sizes.batches_in_flight * sizes.batch_size


def test_one_order_of_results_with_one_writer_and_two_streams():
    """Batches inferred at once, the later ones sometimes first, reach a single writer in the
    order the batches were formed: that of one stream without jitter."""
    keys = list("abcabcaabbcc" * 4)
    calm = simulated(keys, PipelineSizes(batch_size=2, readers=1, writers=1), jitter=False)
    for seed in range(3):
        busy = simulated(keys, PipelineSizes(batch_size=2, writers=1, streams=2), jitter=True, seed=seed)
        assert busy[3] == calm[3] == [i for batch in calm[0] for i in batch]
        assert busy[1] == {i: i * 10 for i in range(len(keys))}


def test_each_stream_thread_runs_the_network_on_its_share_of_the_cores():
    """By default stream_setup runs in every stream thread before its first batch: there torch uses
    the calling thread's cores shared among the streams (a new thread would otherwise use all)."""
    import torch

    from colorize_core.inference.pipeline import network_streams

    cores = torch.get_num_threads()
    assert network_streams("cpu", 1) == 1 and network_streams("cuda", 50) == 1
    assert network_streams("cpu", 50) == cores
    seen = []

    def infer(batch):
        seen.append(torch.get_num_threads())
        return batch

    sizes = PipelineSizes(streams=2)
    run_pipeline(range(8), lambda i: i, lambda i: 0, infer, lambda i, r: None, sizes)  # the default setup
    assert seen == [max(1, cores // 2)] * 8
    assert torch.get_num_threads() == cores  # the caller's own setting is untouched


@pytest.mark.parametrize("stage", ["items", "read", "infer", "finish"])
def test_an_error_in_any_stage_is_raised_and_stops_the_run(stage):
    started = []

    def items():
        for i in range(1000):
            fail_at("items", i)
            yield i

    def fail_at(name, i):
        if stage == name and i == 5:
            raise ValueError(f"{name} failed at 5")

    def read(i):
        started.append(i)
        fail_at("read", i)
        return i

    def infer(batch):
        for i in batch:
            fail_at("infer", i)
        return batch

    with pytest.raises(ValueError, match=f"{stage} failed at 5"):
        run_pipeline(items(), read, lambda i: 0, infer, lambda i, r: fail_at("finish", i), PipelineSizes())
    assert len(started) < 50  # stopped, not run to the end


def test_bad_sizes_are_one_line_naming_the_parameter():
    with pytest.raises(ValueError, match="pipeline readers must be >= 1, got 0"):
        PipelineSizes(readers=0)
    with pytest.raises(ValueError, match="pipeline write_behind must be >= 0"):
        PipelineSizes(write_behind=-1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def colorizer(checkpoint) -> Colorizer:
    return Colorizer.from_checkpoint(checkpoint, "cpu")


def mixed_folder(folder):
    """Photos of several sizes (so several network shapes) and kinds, and one unreadable file."""
    folder.mkdir()
    for i, (h, w) in enumerate([(60, 90), (90, 60), (64, 64), (61, 93), (60, 90), (120, 50), (33, 47)]):
        image = Image.fromarray(colourful_rgb(h, w, seed=i))
        image.save(folder / f"p{i}.jpg", quality=90) if i % 2 else image.convert("L").save(folder / f"p{i}.png")
    exif_rotated_jpeg(folder / "rotated.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


@pytest.mark.parametrize("compiled, sizes", [(None, PipelineSizes(readers=3, writers=3)), (False, None), (None, None)])
@pytest.mark.parametrize("temperatures, sheet", [([0.38], False), ([0, 0.2, 1.0], True)])
def test_a_folder_gives_the_bytes_of_one_image_at_a_time(
    request, tmp_path, checkpoint, temperatures, sheet, compiled, sizes
):
    """Against an independent loop: each photo alone through Colorizer.colorize_batch and encode,
    composed as the folder is (by default the compiled kernel, a folder being several photos; with
    compiled=False the numpy reference), its network on as many cores as each of the folder's
    streams (sizes None: the command's own, one stream per core, each on one core)."""
    import torch

    from colorize_core.images import load_pixels, open_image
    from colorize_core.inference.photo import contact_sheet

    colorizer = Colorizer.from_checkpoint(checkpoint, "cpu", compiled=compiled)
    assert colorizer.uses_kernel(9 * len(temperatures)) == (compiled is None)
    mixed_folder(tmp_path / "in")
    options = PhotoOptions(temperatures, out_dir=tmp_path / "out", sheet=sheet)
    summary = colorize_files([tmp_path / "in"], colorizer, options, sizes)
    cores = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(cores))
    torch.set_num_threads(cores if sizes else 1)  # the default: one stream per core
    assert [p.name for p in summary.done] == sorted(
        p.name for p in (tmp_path / "in").iterdir() if p.name != "broken.png"
    )
    assert [s for s, _ in summary.skipped] == [str(tmp_path / "in" / "broken.png")]
    expected_names = set()
    for source in summary.done:
        with open_image(source) as image:
            fmt = {"JPEG": "JPEG", "PNG": "PNG"}[image.format]
            picture = load_pixels(image)
        colours = colorizer.colorize_batch([picture], temperatures, kernel=compiled is None)[0]
        stem, ext = source.stem + "_color", source.suffix
        names = [f"{stem}{f'_T{T:g}' if len(temperatures) > 1 else ''}{ext}" for T in temperatures]
        for name, rgb in zip(names, colours):
            data = (tmp_path / "out" / name).read_bytes()
            assert data == encode(Image.fromarray(rgb), fmt, metadata_of(picture)), name
        if sheet:
            names.append(f"{stem}_sheet{ext}")
            assert (tmp_path / "out" / names[-1]).read_bytes() == encode(
                contact_sheet(picture, colours, temperatures), fmt, {}
            )
        expected_names.update(names)
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected_names


def test_batches_of_one_shape_stay_within_one_level_of_one_at_a_time(tmp_path, colorizer):
    mixed_folder(tmp_path / "in")
    for batch_size in (1, 4):
        options = PhotoOptions([0.38], out_dir=tmp_path / f"b{batch_size}", format="png", batch_size=batch_size)
        assert len(colorize_files([tmp_path / "in"], colorizer, options).done) == 8
    for path in (tmp_path / "b1").iterdir():
        one, four = np.asarray(Image.open(path), int), np.asarray(Image.open(tmp_path / "b4" / path.name), int)
        assert np.abs(one - four).max() <= 1, path.name  # batched arithmetic may round apart


def test_a_sweep_composes_with_the_kernel_within_its_tolerance_of_the_reference(tmp_path):
    """Several temperatures (or photos) go through the compiled kernel, one photo at one temperature
    through the numpy reference: the bundled model's sweep of a real photo, against the
    reference's, is within the kernel's documented tolerance (tests/test_decode.py): at most one
    8-bit level, in fewer than 1e-4 of the pixels."""
    from helpers import skimage_photo

    sweep = [0.0, 0.09, 0.7]
    Image.fromarray(skimage_photo("chelsea")).save(tmp_path / "cat.png")
    auto, reference = Colorizer.pretrained("cpu"), Colorizer.pretrained("cpu")
    reference.compiled = False
    assert auto.uses_kernel(len(sweep)) and not auto.uses_kernel(1) and not reference.uses_kernel(len(sweep))
    for name, colorizer in (("auto", auto), ("reference", reference)):
        assert (
            len(colorize_files([tmp_path / "cat.png"], colorizer, PhotoOptions(sweep, out_dir=tmp_path / name)).done)
            == 1
        )
    differing = 0
    for T in sweep:
        a, b = (np.asarray(Image.open(tmp_path / n / f"cat_color_T{T:g}.png"), int) for n in ("auto", "reference"))
        difference = np.abs(a - b).max(axis=-1)
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-4, T
        differing += int((difference > 0).sum())
    print(f"{differing} pixels one level apart")  # pytest -s shows it


def test_the_kernel_gives_the_same_pixels_on_one_core_or_all():
    """Writers of a folder compose on one core each: per-pixel arithmetic, so the same bytes."""
    from helpers import skimage_photo

    from colorize_core.inference.compose_kernel import compose_fast

    colorizer = Colorizer.pretrained("cpu")
    view = colorizer.view(Image.fromarray(skimage_photo("astronaut")))
    for grid in colorizer.ab_batch([view], [0.0, 0.7])[0]:  # T = 0: many gamut-mapped pixels
        np.testing.assert_array_equal(compose_fast(view.lightness, grid, 1), compose_fast(view.lightness, grid))


def test_bands_run_in_order_and_in_a_forked_child():
    """inference/bands.py: every band's result in band order; a child forked after the pool has
    run still gets its bands done (its own pool, not the parent's threads, which a fork drops)."""
    import multiprocessing

    from colorize_core.inference.bands import run_in_bands

    assert run_in_bands(lambda band: band * band, 5) == [0, 1, 4, 9, 16]
    assert run_in_bands(lambda band: band + 1, 1) == [1]
    child = multiprocessing.get_context("fork").Process(target=run_in_bands, args=(abs, 3))
    child.start()
    child.join(60)
    assert child.exitcode == 0


def test_a_gpus_networks_run_on_one_thread_per_process():
    """cuDNN plans live per thread: every caller's GPU work runs on one thread, planned once."""
    import torch

    from colorize_core.device import on_gpu_thread

    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")  # a device name, no GPU needed
    ran_on: list[int] = []

    def work() -> int:
        ran_on.append(threading.get_ident())
        return len(ran_on)

    callers = [threading.Thread(target=on_gpu_thread, args=(gpu, work)) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(ran_on) == 4 and len(set(ran_on)) == 1
    assert ran_on[0] not in {caller.ident for caller in callers} | {threading.get_ident()}
    assert on_gpu_thread(gpu, lambda: on_gpu_thread(gpu, work)) == 5 and ran_on[-1] == ran_on[0]  # nested: no deadlock
    assert on_gpu_thread(cpu, work) == 6 and ran_on[-1] == threading.get_ident()  # the CPU: right here
    with pytest.raises(ZeroDivisionError):
        on_gpu_thread(gpu, lambda: 1 / 0)


_FAULTS_PER_FORWARD = """
import resource, sys, threading
import torch
from colorize_core.device import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
torch.set_num_threads(1)
net = torch.nn.Sequential(*[torch.nn.Conv2d(16, 16, 3, padding=1) for _ in range(4)]).eval()
x = torch.randn(1, 16, 224, 320)  # activations of 4.6 MB, as a photo's early layers
def stream():
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(10):
            net(x)
        print((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 10)
thread = threading.Thread(target=stream)  # a network stream: a thread of its own, not the main one
thread.start()
thread.join()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_reused_memory_spares_a_streams_page_faults():
    """A network stream's forward passes fault their activations' pages in anew each time under
    glibc's defaults (its thread heap is given back and made again); with the allocator set as
    `colorize photo` sets it, the pages are kept and reused. Page faults are counted, not timed."""

    def faults(mode: str) -> float:
        run = subprocess.run([sys.executable, "-c", _FAULTS_PER_FORWARD, mode], capture_output=True, text=True, check=True)
        return float(run.stdout.split()[-1])

    default, reused = faults("default"), faults("reuse")
    assert default > 1000  # ~3,400 a forward here: the cost this setting removes
    assert reused < default / 20
