"""Download, as wheels for the lent GPU machine, what the workflow needs that its image lacks.

The machine (Python 3.12, x86-64) has torch, Lightning, h5py, NumPy, SciPy, scikit-learn, pandas,
seaborn and more, but not Snakemake, jsonschema, phate, ripser, Optuna, mnist1d and their small
dependencies, and it reaches no package index. This lists what this project's dependencies need
beyond the image's packages (the versions installed here, in ``.venv``), downloads their wheels
into ``--dest`` (``.whl``) and builds the few that PyPI has only as source. Then
``WHEELS=.whl bash bench/gpu_check.sh`` installs them there (``--no-deps --target /tmp/site``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import Marker

#: The GPU image's Python packages (device tool's KINDS.md, read 2026-11-17): never carried, so
#: that nothing here shadows the image's own builds.
ON_DEVICE = set(
    """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch
grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
)
#: The machine's interpreter, for dependency markers.
DEVICE_PYTHON = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
PLATFORMS += ["manylinux1_x86_64", "any"]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[(]", requirement.strip())[0]).lower()


def needed(roots: list[str]) -> dict[str, str]:
    """{package: version installed here} of roots and their dependencies the machine lacks."""
    found: dict[str, str] = {}
    todo = [_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name not in found and name not in ON_DEVICE:
            todo += [_name(r) for r in _requires(name)]
            found[name] = distribution(name).version
    return found


def _requires(name: str) -> list[str]:
    try:
        requirements = distribution(name).requires or []
    except PackageNotFoundError as err:
        raise SystemExit(f"{name} is not installed here: run `make install` first") from err
    out = []
    for req in requirements:
        marker = req.split(";", 1)[1] if ";" in req else None
        if marker and ("extra" in marker or not Marker(marker).evaluate(DEVICE_PYTHON)):
            continue
        out.append(req)
    return out


def download(packages: dict[str, str], dest: Path) -> None:
    """Binary wheels for the machine; a pure-Python wheel built here where PyPI has none."""
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    for name, version in sorted(packages.items()):
        spec = f"{name}=={version}"
        binary = [*pip, "download", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
        binary += ["--python-version", "3.12", "--implementation", "cp", *platforms, spec]
        if subprocess.run(binary, capture_output=True).returncode != 0:
            print(f"{spec}: no wheel on PyPI, building one", flush=True)
            built = Path(tempfile.mkdtemp())
            subprocess.run([*pip, "wheel", "--no-deps", "-w", str(built), spec], check=True)
            for wheel in built.glob("*.whl"):
                if not wheel.name.endswith("-py3-none-any.whl"):
                    raise SystemExit(f"{wheel.name} is built for this machine only; no wheel fits")
                shutil.move(wheel, dest / wheel.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(".whl"))
    parser.add_argument("--list", action="store_true", help="print the packages, download nothing")
    args = parser.parse_args()
    packages = needed(_requires("nnmanifold"))  # the project travels as source (workflow/)
    for name, version in sorted(packages.items()):
        print(f"{name}=={version}")
    if not args.list:
        download(packages, args.dest)
        size = sum(p.stat().st_size for p in args.dest.glob("*.whl")) / 2**20
        print(f"{len(list(args.dest.glob('*.whl')))} wheels, {size:.0f} MB in {args.dest}")


if __name__ == "__main__":
    main()
