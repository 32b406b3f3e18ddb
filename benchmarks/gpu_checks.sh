#!/bin/bash
# Every check that needs a CUDA GPU, in one run from the repository root (about 5 minutes on an H100):
#   1. the demo pipeline, every DVC stage command in order, with device: cuda (bf16 training);
#   2. the GPU-trained checkpoint colorizes a photo on the CPU and on the GPU;
#   3. benchmarks/bench_gpu.py (full-width training step, bf16, against the bf16 matmul peak);
#   4. the training, model, decoding and photo tests with a GPU present.
# Logs and results go to $OUT (default /tmp/gpu-checks).
set -u -o pipefail
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 MPLBACKEND=Agg
status=0
step() { echo "=== $*"; }

step environment
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

step "1. demo pipeline on the GPU"
sed -i 's/^\(  device: \)auto/\1cuda/' params.yaml && grep -c "device: cuda" params.yaml
python3 - <<'PY' > "$OUT/stage_commands.sh"
import yaml
for name, stage in yaml.safe_load(open("dvc.yaml"))["stages"].items():
    print(f"echo '--- {name}' && /usr/bin/time -f '{name}: %e s, %M KiB' " + " ".join(stage["cmd"].split()).replace("python ", "python3 ", 1) + " || exit 1")
PY
bash "$OUT/stage_commands.sh" 2>&1 | tee "$OUT/pipeline.log" || status=1
cp reports/train_log.csv reports/metrics.json reports/classification.md "$OUT/" 2>/dev/null
cat reports/train_log.csv reports/classification.md 2>/dev/null

step "2. GPU checkpoint on CPU and GPU"
photo=$(python3 -c 'import skimage, pathlib; print(pathlib.Path(skimage.data.__file__).parent / "coffee.png")')
for device in cpu cuda; do
  python3 -m colorize_core.cli photo "$photo" --out "/tmp/photo-$device" --checkpoint models/best.pt --device "$device" --T 0.38 || status=1
done
python3 - <<'PY' || status=1
import numpy as np
from PIL import Image
cpu, gpu = (np.asarray(Image.open(f"/tmp/photo-{d}/coffee_color.png").convert("RGB"), dtype=int) for d in ("cpu", "cuda"))
print(f"coffee.png colorized on CPU vs GPU: mean |difference| {np.abs(cpu - gpu).mean():.3f} of 255, max {np.abs(cpu - gpu).max()}")
PY

step "3. bench_gpu"
python3 benchmarks/bench_gpu.py --compile 2>&1 | tee "$OUT/bench_gpu.log" || status=1
cp benchmarks/results/gpu.json "$OUT/" 2>/dev/null

step "4. tests with a GPU present"
git checkout -q params.yaml 2>/dev/null || sed -i 's/^\(  device: \)cuda/\1auto/' params.yaml
timeout 240 python3 -m pytest -q -x -p no:cacheprovider tests/test_model.py tests/test_train.py tests/test_decode.py tests/test_photo.py 2>&1 | tail -15 | tee "$OUT/pytest.log" || status=1
echo "gpu_checks: exit status $status"
exit $status
