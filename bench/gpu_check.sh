#!/usr/bin/env bash
# GPU check, run on a lent GPU machine (device tool), from the repository root:
#   bash bench/gpu_check.sh                      # every part, a few minutes on one H200
#   bash bench/gpu_check.sh --part distances     # < 90 s: CUDA distance rate vs float64 GEMM
#   bash bench/gpu_check.sh --part distances-10k # < 2 min: operators + distances, N = 10,000
#   bash bench/gpu_check.sh --part train         # training on the GPU, one device per job
# Uses the machine's own python3 (torch, h5py, numpy, scipy, scikit-learn are there) with the
# package from workflow/ on PYTHONPATH; nothing is installed. Figures go to stdout and $OUT;
# a part whose figure misses its goal fails the script.
set -euo pipefail
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-bench/out}"
PART=all
if [[ "${1:-}" == "--part" ]]; then PART="$2"; fi
case "$PART" in all|distances|distances-10k|train) ;; *) echo "unknown part $PART" >&2; exit 2;; esac
want() { [[ "$PART" == all || "$PART" == "$1" ]]; }
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# check FILE EXPRESSION MESSAGE: assert EXPRESSION over the JSON figures f on FILE's last line
check() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
f = json.loads(open(sys.argv[1]).read().splitlines()[-1])
ok = eval(sys.argv[2], {}, {"f": f})
print(("PASS" if ok else "FAIL"), sys.argv[3], "|", sys.argv[2], "|", f)
sys.exit(0 if ok else 1)
PY
}

if want distances; then
    echo "== distances: CUDA rate vs this GPU's float64 GEMM of the same shape (N=2000, n=1000)"
    python3 bench/distances.py --device-rate --device cuda --models 2000 --points 1000 \
        --budget-mb 4096 --repeats 3 | tee "$OUT/distances_rate.txt" | tail -1
    check "$OUT/distances_rate.txt" 'f["resident_gemm_fraction"] >= 0.5' \
        "operators resident: distance rate >= 0.5 of float64 GEMM"
    echo "== distances: CUDA agrees with the NumPy reference and the CPU path"
    python3 -m pytest -q tests/test_distances.py -k cuda -p no:cacheprovider
fi

if want distances-10k; then
    echo "== distances: operators + distances of N=10,000 networks at n=1,000 (80 GB of operators)"
    python3 bench/distances.py --device-rate --device cuda --models 10000 --points 1000 \
        --budget-mb 24576 --repeats 1 | tee "$OUT/distances_10k.txt" | tail -1
    check "$OUT/distances_10k.txt" 'f["resident_s"] < 120 and f["streamed_s"] < 120' \
        "N=10,000 in under 2 minutes, resident and streamed in 24 GB"
fi

if ! want train; then exit 0; fi
echo "== train: training on the GPU and one device per job"
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
