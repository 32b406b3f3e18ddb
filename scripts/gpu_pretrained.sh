#!/bin/bash
# experiment=pretrained-gpu on a lent GPU machine, in one call that must end inside a deadline.
#
#   DEADLINE_S=560 PARAMS=params-gpu.yaml bash scripts/gpu_pretrained.sh
#
# Runs the stage commands of dvc.yaml (sample, shard, histogram, train) on the composed PARAMS,
# with ../shared/data already in place. The number of epochs is the one that fills the time left:
# a probe times training steps on real batches, and train.epochs is set before training starts
# (the cosine schedule needs it), so the checkpoint records the count it was trained with. If the
# training still overruns, best.pt is written from the last complete epoch's saved state.
# Then: the fp16 export that ships, a CPU-against-GPU colorization of one photo, and the GPU tests
# in whatever time is left. Everything worth keeping goes to $OUT (at most 8 files).
set -u -o pipefail
OUT=${OUT:-/tmp/gpu-out}
DEADLINE_S=${DEADLINE_S:-560}
PARAMS=${PARAMS:?the composed params file}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 MPLBACKEND=Agg
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }
step() { echo "=== [$(elapsed) s] $*"; }
log="$OUT/run.log"
exec > >(tee -a "$log") 2>&1

step environment
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
nproc

cp params.yaml /tmp/params.default.yaml
cp "$PARAMS" params.yaml
stage_command() {  # a stage's command from dvc.yaml
  python3 -c "import yaml, sys; print(' '.join(yaml.safe_load(open('dvc.yaml'))['stages'][sys.argv[1]]['cmd'].split()).replace('python ', 'python3 ', 1))" "$1"
}
stage() {
  step "$1: $(stage_command "$1")"
  bash -c "$(stage_command "$1")"
}
stage sample || exit 1
stage shard || exit 1
stage histogram || exit 1

step "probe: training steps on real batches"
train_limit=$(( DEADLINE_S - $(elapsed) - 75 ))   # leave time for the export and the checks
python3 - "$train_limit" <<'PY' || exit 1
import sys, time, torch
from colorize_core.bins import Bins
from colorize_core.config import load_params
from colorize_core.data.shard_format import read_index, shard_urls
from colorize_core.model import ModelConfig, build_model
from colorize_core.train.data import batches
from colorize_core.train.loss import RebalancedCrossEntropy
from colorize_core.train.step import training_step
from colorize_core.train.trainer import autocast_dtype, parameter_groups

seconds = float(sys.argv[1])
p = load_params("params.yaml").train
device = torch.device("cuda" if torch.cuda.is_available() and p.device != "cpu" else "cpu")
bins = Bins.load("data/bins.json")
model = build_model(ModelConfig(p.arch, p.width, bins.num_classes)).to(device, memory_format=torch.channels_last)
if p.freeze_encoder:
    model.freeze_encoder(p.trainable_encoder_stages)
optimizer = torch.optim.Adam(parameter_groups(model, p.lr, p.encoder_lr_factor), lr=p.lr)
loss = RebalancedCrossEntropy(bins, p.rebalance, p.encoding).to(device)
lightness, cells = next(iter(batches(shard_urls("data/shards", "train"), p.batch_size, 0, 0, 10)))
lightness = lightness.to(device).contiguous(memory_format=torch.channels_last)
cells = cells.to(device)
dtype = autocast_dtype(p.precision, device)
scaler = torch.amp.GradScaler(device.type, enabled=False)
timed = 20 if device.type == "cuda" else 2
for i in range(5 + timed):
    if i == 5:
        torch.cuda.synchronize() if device.type == "cuda" else None
        start = time.perf_counter()
    training_step(model, loss, optimizer, lightness, cells, dtype, scaler).item()
network_speed = timed * p.batch_size / (time.perf_counter() - start)
# the loader alone, after the batches that the workers' prefilled shuffle buffers hold (timing
# those measured 7,438 images/s where the epochs then ran at 300 to 650: benchmarks/NOTES.md)
if p.data_on_device:  # no loader: the samples are read once into the GPU's memory before the first epoch
    loader_speed = float("inf")
else:
    loader = batches(shard_urls("data/shards", "train"), p.batch_size, p.seed, 0, p.shuffle_buffer,
                     loader_workers=p.loader_workers, pin_memory=device.type == "cuda")
    buffered = -(-max(1, p.loader_workers) * p.shuffle_buffer // p.batch_size)
    marks, images = [], 0  # (clock, images so far) after each batch
    for _, cells in loader:
        images += len(cells)
        marks.append((time.perf_counter(), images))
        if len(marks) > buffered and marks[-1][0] - marks[buffered][0] > 10:
            break
    first, last = marks[min(buffered, len(marks) // 2)], marks[-1]  # a small pool: its second half
    loader_speed = (last[1] - first[1]) / max(last[0] - first[0], 1e-6)
    del loader
images_per_second = min(network_speed, loader_speed)
print(f"probe: network {network_speed:.0f} images/s, loader {loader_speed:.0f} images/s")
samples = read_index("data/shards")["splits"]
per_epoch = (samples["train"]["samples"] + 0.3 * samples["val"]["samples"]) / images_per_second
# 0.75: the two overlap imperfectly; the validation pass and the state written after each epoch
epochs = max(1, min(40, int(0.75 * seconds / per_epoch)))
print(f"probe: {images_per_second:.0f} images/s on {device}; {per_epoch:.1f} s per epoch; {epochs} epochs in {seconds:.0f} s")
text = open("params.yaml").read()
import re
text, n = re.subn(r"(?m)^(  epochs: )\d+", rf"\g<1>{epochs}", text)
assert n == 1, "train.epochs not found exactly once in params.yaml"
open("params.yaml", "w").write(text)
PY
grep -n "^  epochs:" params.yaml

train_limit=$(( DEADLINE_S - $(elapsed) - 60 ))
step "train (stopped after $train_limit s at the latest)"
timeout "$train_limit" bash -c "$(stage_command train)"
train_rc=$?
if [ $train_rc -ne 0 ]; then
  step "train stopped (rc $train_rc): best.pt from the last complete epoch's state"
  python3 - <<'PY' || exit 1
from colorize_core.config import load_params
from colorize_core.train.trainer import best_from_saved_state
best = best_from_saved_state(load_params("params.yaml").train, "data/shards", "data/bins.json", "models")
best.save("models/best.pt")
print(f"best.pt: epoch {best.epoch}, val loss {best.val_loss:.4f}")
PY
fi

step "export (fp16, the shipped form)"
T=$(python3 -c "from colorize_core.config import load_params; print(load_params('params.yaml').T)")
size=$(python3 -c "from colorize_core.config import load_params; print(load_params('params.yaml').decode.size)")
python3 -m colorize_core.cli export models/best.pt "$OUT/colorizer_gpu.pt" --size "$size" -t "$T" || exit 1

step "the exported model on the CPU and on the GPU"
photo=$(python3 -c 'import skimage, pathlib; print(pathlib.Path(skimage.data.__file__).parent / "coffee.png")')
for device in cpu cuda; do
  python3 -m colorize_core.cli photo "$photo" --out "/tmp/photo-$device" --checkpoint "$OUT/colorizer_gpu.pt" --device "$device"
done
python3 - <<'PY'
import numpy as np
from PIL import Image
cpu, gpu = (np.asarray(Image.open(f"/tmp/photo-{d}/coffee_color.png").convert("RGB"), dtype=int) for d in ("cpu", "cuda"))
print(f"coffee.png colorized on CPU vs GPU: mean |difference| {np.abs(cpu - gpu).mean():.3f} of 255, max {np.abs(cpu - gpu).max()}")
PY

tar cf "$OUT/reports.tar" params.yaml data/bins.json reports/train_log.csv reports/loss.png reports/bins.png \
  reports/shard.json data/sample 2>/dev/null
cp /tmp/photo-cuda/coffee_color.png "$OUT/" 2>/dev/null

left=$(( DEADLINE_S - $(elapsed) - 10 ))
if [ $left -gt 30 ]; then
  step "tests with a GPU present ($left s)"
  cp /tmp/params.default.yaml params.yaml
  timeout "$left" python3 -m pytest -q -x -p no:cacheprovider tests/test_model.py tests/test_train.py tests/test_decode.py 2>&1 | tail -8
fi
step "done"
