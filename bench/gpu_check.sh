#!/usr/bin/env bash
# GPU check, run in one call on a lent GPU machine (device tool), from the repository root:
#   bash bench/gpu_check.sh            # ~3 minutes on one H200; figures go to stdout and $OUT
# Uses the machine's own python3 (torch, lightning, h5py, scikit-learn are there) with the package
# from workflow/ on PYTHONPATH; nothing is installed.
set -euo pipefail
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-bench/out}"
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. distances: CUDA vs CPU Gram, same zoo (N=200, n=1000)"
python3 bench/distances.py --models 200 --points 1000 --device cuda | tee "$OUT/distances_cuda.txt" | tail -1
python3 bench/distances.py --models 200 --points 1000 --device cpu | tee "$OUT/distances_cpu.txt" | tail -1

echo "== 2. CUDA agrees with the CPU path"
python3 -m pytest -q tests/test_distances.py -k cuda -p no:cacheprovider

echo "== 3. training on the GPU and one device per job"
python3 - <<'PY' | tee "$OUT/train_gpu.txt"
import json, subprocess, sys, tempfile, time
from nnmanifold import data, gpu, train, zoo
from nnmanifold.config import validate

print("visible GPUs:", gpu.visible_gpu_count())
cfg = validate({"zoo": {"seeds": [0, 1], "space": {"lr": [0.1, 0.01], "epochs": [5]}}})
ds = data.load_dataset(cfg["data"])
idx = data.probe_indices(ds.y_test, 200, 0)
probe = {"indices": idx, "labels": ds.y_test[idx], "x": ds.x_test[idx], "dataset": "digits"}
probe["hash"] = data.probe_hash("digits", idx, probe["labels"], probe["x"])
rows = []
for accel in ("gpu", "cpu"):
    for spec in zoo.expand(cfg):
        t = time.perf_counter()
        m = train.train_model(spec, ds, probe, tempfile.mkdtemp(), accelerator=accel)
        rows.append({"accelerator": accel, "model": spec["model_id"], "status": m["status"],
                     "accuracy": round(m["test_accuracy"], 4), "seconds": round(time.perf_counter() - t, 2)})
for r in rows:
    print(json.dumps(r))
claim = "from nnmanifold import gpu; import os, time; gpu.claim_device(1); print(os.environ['CUDA_VISIBLE_DEVICES']); time.sleep(2)"
procs = [subprocess.Popen([sys.executable, "-c", claim], stdout=subprocess.PIPE, text=True) for _ in range(2)]
print("devices claimed by two concurrent jobs:", [p.communicate()[0].strip() for p in procs])
PY
