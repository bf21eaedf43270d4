#!/usr/bin/env bash
# GPU check, run on a lent GPU machine (device tool), from the repository root:
#   bash bench/gpu_check.sh                      # every part, a few minutes on one H200
#   bash bench/gpu_check.sh --part distances     # < 90 s: CUDA distance rate vs float64 GEMM
#   bash bench/gpu_check.sh --part distances-10k # < 2 min: operators + distances, N = 10,000
#   bash bench/gpu_check.sh --part train         # < 90 s: vectorised training, K = 1,024 MLPs
#   bash bench/gpu_check.sh --part mixed         # < 2 min: K = 1,024 MLPs of random widths
#   bash bench/gpu_check.sh --part pipeline      # < 90 s: the 32-network zoo through Snakemake
#   bash bench/gpu_check.sh --part resume        # < 90 s: SIGKILL + resume on CUDA, dropout on
#   bash bench/gpu_check.sh --part resnet        # < 90 s: 64 ResNet-8s as one group vs 4 alone
# Uses the machine's own python3 (torch, Lightning, h5py, numpy, scipy, scikit-learn are there) with
# the package from workflow/ on PYTHONPATH. The pipeline and resume parts also need Snakemake,
# jsonschema and the rest: WHEELS names a folder of wheels for them (`python bench/gpu_wheels.py`
# here writes .whl/; carry it), installed into /tmp/site. MNIST_NPZ names MNIST as an npz
# (x_train, y_train, x_test, y_test); without it the training parts make a synthetic MNIST-shaped
# set. Figures go to stdout and $OUT. A failed step or missed goal is reported and the script goes
# on to the next one (a lent machine's minutes are few); it exits 1 at the end if any failed.
set -euo pipefail
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-bench/out}"
PART=all
if [[ "${1:-}" == "--part" ]]; then PART="$2"; fi
case "$PART" in all|distances|distances-10k|train|mixed|pipeline|resume|resnet) ;; *) echo "unknown part $PART" >&2; exit 2;; esac
want() { [[ "$PART" == all || "$PART" == "$1" ]]; }
if [[ -n "${WHEELS:-}" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

FAILED=()
fail() { FAILED+=("$1"); echo "FAIL $1"; }
# check FILE EXPRESSION MESSAGE: assert EXPRESSION over the JSON figures f on FILE's last line
check() {
    python3 - "$1" "$2" "$3" <<'PY' || fail "$3"
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
        --budget-mb 4096 --repeats 3 | tee "$OUT/distances_rate.txt" | tail -1 \
        || fail "distances.py"
    check "$OUT/distances_rate.txt" 'f["resident_gemm_fraction"] >= 0.5' \
        "operators resident: distance rate >= 0.5 of float64 GEMM"
    echo "== distances: CUDA agrees with the NumPy reference and the CPU path"
    python3 -m pytest -q tests/test_distances.py -k cuda -p no:cacheprovider \
        || fail "CUDA distance tests"
fi

if want distances-10k; then
    echo "== distances: operators + distances of N=10,000 networks at n=1,000 (80 GB of operators)"
    python3 bench/distances.py --device-rate --device cuda --models 10000 --points 1000 \
        --budget-mb 24576 --repeats 1 | tee "$OUT/distances_10k.txt" | tail -1 \
        || fail "distances.py 10k"
    check "$OUT/distances_10k.txt" 'f["resident_s"] < 120 and f["streamed_s"] < 120' \
        "N=10,000 in under 2 minutes, resident and streamed in 24 GB"
fi

if want train; then
    echo "== train: vectorised MLPs 784-64-64-10, K=1,024 on one GPU (goal >= 1,000 model-epochs/s)"
    # MNIST as an npz (x_train, y_train, x_test, y_test) when MNIST_NPZ names one, else synthetic
    python3 bench/train.py --gpu ${MNIST_NPZ:+--npz "$MNIST_NPZ"} | tee "$OUT/train_gpu.txt" | tail -1 \
        || fail "train.py --gpu"
    check "$OUT/train_gpu.txt" 'f["model_epochs_per_s"] >= 1000 and f["ok"] == f["models"]' \
        "vectorised training >= 1,000 model-epochs/s, every model ok"
    echo "== train: two concurrent jobs claim distinct slots (and distinct devices if two GPUs)"
    python3 - <<'PY' || fail "device claims"
import json, subprocess, sys, tempfile
from nnmanifold.core import gpu
n = gpu.visible_gpu_count()
claim = """
import json, os, sys, time
from pathlib import Path
from nnmanifold.core import gpu
device = gpu.claim_device(2, lock_dir=Path(sys.argv[1]), poll_seconds=0.1)
lock = os.readlink(f"/proc/self/fd/{gpu._held[-1]}")
print(json.dumps({"device": device, "visible": os.environ["CUDA_VISIBLE_DEVICES"], "lock": lock}))
sys.stdout.flush()
time.sleep(3)  # held while the other job claims
"""
env = {k: v for k, v in __import__("os").environ.items() if k != "CUDA_VISIBLE_DEVICES"}
with tempfile.TemporaryDirectory() as locks:
    procs = [subprocess.Popen([sys.executable, "-c", claim, locks], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    claims = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
print(f"{n} GPU(s); claims of two concurrent jobs:", claims)
assert all(c["device"] is not None and str(c["device"]) == c["visible"] for c in claims), claims
assert claims[0]["lock"] != claims[1]["lock"], "two jobs hold the same slot lock"
if n >= 2:
    assert claims[0]["device"] != claims[1]["device"], "two jobs on one GPU while two are free"
print("PASS distinct slot claims" + (" on distinct devices" if n >= 2 else " (one GPU)"))
PY
fi

if want mixed; then
    echo "== mixed: K=1,024 MNIST-shaped MLPs (depth 2) at widths log-uniform 8-128, padded groups,"
    echo "   next to the same K at width 64 (goal: >= 0.5 of the one-shape model-epochs/s)"
    python3 bench/train.py --gpu --random-widths ${MNIST_NPZ:+--npz "$MNIST_NPZ"} \
        | tee "$OUT/train_gpu_mixed.txt" | tail -1 || fail "train.py --gpu --random-widths"
    check "$OUT/train_gpu_mixed.txt" \
        'f["random_width_fraction_of_one_shape"] >= 0.5 and f["random_width_ok"] == f["models"]' \
        "random widths >= 0.5 of the one-shape model-epochs/s, every model ok"
fi

if want pipeline; then
    echo "== pipeline: 32 MNIST MLPs and CNNs, 2 epochs, through Snakemake (goal: training phase"
    echo "   <= 5.4 s, 20x under the 108 s of one process per model; start-up included)"
    python3 bench/train_pipeline.py --accelerator gpu --cores 16 ${MNIST_NPZ:+--npz "$MNIST_NPZ"} \
        | tee "$OUT/train_pipeline.txt" | tail -1 || fail "train_pipeline.py"
    check "$OUT/train_pipeline.txt" 'f["training_phase_s"] <= 5.4 and f["ok"] == f["models"] == 32' \
        "pipeline training phase >= 20x shorter than 108 s, every model ok"
fi

if want resume; then
    echo "== resume on CUDA with dropout: SIGKILL mid-epoch, no finished epoch repeated (< 90 s)"
    NNMANIFOLD_TEST_ACCELERATOR=gpu python3 -m pytest -q -p no:cacheprovider \
        tests/test_group.py tests/test_train.py -k "sigkill" \
        || fail "CUDA resume tests"
fi

if want resnet; then
    echo "== resnet: 64 ResNet-8s as one group, 2 epochs of 10,000 CIFAR-shaped synthetic images,"
    echo "   next to 4 trained one at a time (goal: group >= 5x faster per model, every model ok)"
    python3 bench/train.py --resnet --gpu | tee "$OUT/train_resnet_gpu.txt" | tail -1 \
        || fail "train.py --resnet --gpu"
    check "$OUT/train_resnet_gpu.txt" \
        'f["speedup_per_model"] >= 5 and f["ok"] == f["models"] and f["group_sizes"] == [64]' \
        "ResNet group >= 5x faster per model than one at a time, one group of 64, every model ok"
fi

if ((${#FAILED[@]})); then
    printf 'failed: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "every check passed"
