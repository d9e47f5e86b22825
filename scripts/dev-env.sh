#!/usr/bin/env bash
# Creates (or refreshes) the project-local venv `.venv` with the test tools, then builds the
# Python package (Rust extension pynisher._core, release profile) and installs it in editable
# mode. Idempotent: tools are installed only when missing, and the build is skipped when no
# input changed since the last one.
#
#   bash scripts/dev-env.sh            # venv + tools + build
#   PYNISHER_NO_DASK=1 bash ...        # skip dask[distributed] (only the Dask test needs it)
#   PYNISHER_NO_RAY=1 bash ...         # skip ray (only the Ray test needs it; ~80 MB wheel, ~260 MB installed)
#   .venv/bin/python -m pytest tests/python
#   .venv/bin/python -m mypy.stubtest pynisher._core     # the .pyi stubs match the module
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"

# Pinned test tooling; bump deliberately.
tools=(
    "maturin==1.16.0"
    "pytest==8.4.2"
    "pytest-timeout==2.4.0"
    "cloudpickle==3.1.3"
    "psutil==7.2.2"
    # joblib's loky workers and loky's reusable executor: calls inside them (test_contexts.py).
    "joblib==1.6.0"
    "loky==3.7.0"
    "mypy==2.4.1"
    "ruff==0.14.0"
)
if [ -z "${PYNISHER_NO_DASK:-}" ]; then
    tools+=("dask[distributed]==2026.8.0")
fi
if [ -z "${PYNISHER_NO_RAY:-}" ]; then
    tools+=("ray==2.60.0")
fi
stamp="$venv/.pynisher-tools"
want="$(printf '%s\n' "${tools[@]}")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$py" -m pip install --disable-pip-version-check -q --upgrade pip
    "$py" -m pip install --disable-pip-version-check -q "${tools[@]}"
    printf '%s' "$want" > "$stamp"
fi

# Rebuild only when a build input changed (Rust sources, manifests, pyproject).
build_stamp="$venv/.pynisher-build"
inputs_hash="$(
    { find crates -type f \( -name '*.rs' -o -name 'Cargo.toml' \) -print0 | sort -z | xargs -0 sha256sum
      sha256sum Cargo.toml Cargo.lock pyproject.toml; } | sha256sum | cut -d' ' -f1
)"
so_present="$(ls python/pynisher/_core*.so 2>/dev/null | head -1 || true)"
if [ -z "$so_present" ] || [ ! -f "$build_stamp" ] || [ "$(cat "$build_stamp")" != "$inputs_hash" ] \
    || ! "$py" -c 'import pynisher._core' 2>/dev/null; then
    # maturin develop installs the package in editable mode: python/ is used in place and the
    # extension module is copied next to the sources.
    VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release -q
    echo "$inputs_hash" > "$build_stamp"
fi
# The `pynisher` command line inside the package (pynisher._cli.binary_path(), the `pynisher`
# console script, `python -m pynisher`): the release wheels bundle it at pynisher/_bin/pynisher
# (scripts/wheels.sh); here it is the workspace's own release build, copied into the source tree.
cargo build --release --locked -q -p pynisher-cli
mkdir -p python/pynisher/_bin
if ! cmp -s target/release/pynisher python/pynisher/_bin/pynisher; then
    cp target/release/pynisher python/pynisher/_bin/pynisher.tmp
    mv -f python/pynisher/_bin/pynisher.tmp python/pynisher/_bin/pynisher
fi
"$py" -c 'import pynisher._core as c; print("pynisher._core", c.__version__, "backends:", c.available_backends())'
