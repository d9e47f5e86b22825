#!/usr/bin/env bash
# Runs every quality gate and every test of the project, Rust and Python, and fails on the first
# failure. Installs what it needs into the project (a local venv for Python); needs cargo and python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Each step says how long the suite has run so far (CI has 2 cores; the whole suite should stay
# well under 15 minutes).
started=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked --features pynisher/tokio -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q --features pynisher/tokio

step "cargo test (engine with its tokio feature, macros, CLI)"
cargo test --locked --features pynisher/tokio

step "engine tests that need this machine's cgroups (ignored above)"
bash scripts/machine-tests.sh

step "cgroup v2 suite in a VM: delegated cgroup, as root and as its owner (docs/cgroups.md)"
# Exit 77: this machine cannot host the VM; the suite printed "SKIPPED cgroup v2 VM suite: why".
vm_status=0
bash scripts/cgroup2-suite.sh || vm_status=$?
[ "$vm_status" -eq 0 ] || [ "$vm_status" -eq 77 ] || exit "$vm_status"

step "Python package: venv, build, stub check"
bash scripts/dev-env.sh
.venv/bin/python -m mypy.stubtest pynisher._core

step "ruff and mypy over python/pynisher"
.venv/bin/ruff check python/pynisher
.venv/bin/python -m mypy

step "cargo install --path crates/pynisher-cli (the README's way to get the command; reuses target/)"
install_root="$(mktemp -d)"
CARGO_TARGET_DIR="$root/target" cargo install --locked --quiet --path crates/pynisher-cli --root "$install_root"
"$install_root/bin/pynisher" --version
set +e; "$install_root/bin/pynisher" -q --wall-time 100ms -- sleep 5; rc=$?; set -e
[ "$rc" = 124 ] || { echo "installed pynisher: expected exit 124 on a wall-time limit, got $rc" >&2; exit 1; }
rm -rf "$install_root"

step "release artifacts: sdist + manylinux2014 x86_64 wheel (tested in fresh venvs by pytest)"
# One non-Linux target is checked for the one-message stop (each costs ~40 s of CPU cold).
WHEEL_TARGETS="$(uname -m)" NONLINUX_TARGETS="aarch64-apple-darwin" bash scripts/wheels.sh

step "pytest"
.venv/bin/python -m pytest tests/python -q
step "all passed"
