"""GPU: what an input shape the network has not seen costs, and where that cost is paid again.

    python benchmarks/bench_gpu_shapes.py

On a lent H200 (2026-11-28) the bundled network's first batch of 16 at a new shape took about 2 s
and a repeat 20 to 33 ms; a folder of 12 photos run three times in one process took 6.8, 8.6 and
8.4 s, the repeats no faster (benchmarks/NOTES.md). PyTorch keeps cuDNN's execution plans per
thread, so this times, for a few view shapes of the folder benchmark's kind:

- ``first`` and ``again``: through ``Colorizer.log_probs`` (the process's one GPU thread);
- ``new_thread``: the same shape through ``log_probs`` called from a thread made for it (it
  should cost what ``again`` does: the work still runs on the one GPU thread);
- ``raw_new_thread``: the same shape through the model called directly in a new thread (what
  every new pipeline or request thread paid before the one GPU thread);
- the first batch at a new shape with bf16 autocast, and with cuDNN turned off (its steady time
  beside it), as leads for planning less.

Prints one line per measurement as it goes; writes ``results/gpu_shapes.json``. Needs a GPU.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from colorize_core.inference.colorizer import Colorizer  # noqa: E402

BATCH = 16
SHAPES = [(224, 288), (224, 320), (288, 224), (224, 352), (224, 416), (224, 256)]


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def in_new_thread(run) -> float:
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(seconds(run)))
    thread.start()
    thread.join()
    return out[0]


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu_shapes: needs a CUDA device")
    colorizer = Colorizer.pretrained("cuda")
    rng = np.random.default_rng(0)

    def batch(shape: tuple[int, int]) -> np.ndarray:
        return (rng.random((BATCH, *shape), dtype=np.float32) * 100).astype(np.float32)

    def raw(lightness: np.ndarray, dtype: torch.dtype | None = None) -> None:
        """The model called directly, in the calling thread (``dtype``: autocast to it)."""
        x = torch.from_numpy(lightness).unsqueeze(1).cuda().contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            colorizer.model(x)

    m: dict = {"gpu": torch.cuda.get_device_name(0), "batch": BATCH}
    for shape in SHAPES[:3]:
        name, x = f"{shape[0]}x{shape[1]}", batch(shape)
        m[f"{name}_first_s"] = seconds(lambda: colorizer.log_probs(x))
        m[f"{name}_again_s"] = seconds(lambda: colorizer.log_probs(x))
        m[f"{name}_new_thread_s"] = in_new_thread(lambda: colorizer.log_probs(x))
        m[f"{name}_raw_new_thread_s"] = in_new_thread(lambda: raw(x))
        print(" ".join(f"{k}={v:.3f}" for k, v in m.items() if k.startswith(name)), flush=True)
    x = batch(SHAPES[3])
    m["bf16_first_s"] = in_new_thread(lambda: raw(x, dtype=torch.bfloat16))
    m["bf16_again_s"] = seconds(lambda: raw(x, dtype=torch.bfloat16))
    print(f"bf16 first {m['bf16_first_s']:.3f} again {m['bf16_again_s']:.3f}", flush=True)
    torch.backends.cudnn.enabled = False
    x = batch(SHAPES[4])
    m["no_cudnn_first_s"] = seconds(lambda: raw(x))
    m["no_cudnn_again_s"] = seconds(lambda: raw(x))
    print(f"no cuDNN first {m['no_cudnn_first_s']:.3f} again {m['no_cudnn_again_s']:.3f}", flush=True)
    torch.backends.cudnn.enabled = True
    report("gpu_shapes", m, [])


if __name__ == "__main__":
    main()
