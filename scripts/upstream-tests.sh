#!/usr/bin/env bash
# Runs upstream pynisher 1.0.10's own test suite against this package (docs/python-api.md,
# "Upstream 1.0.10's own test suite"). Fetches nothing from upstream: give it a checkout.
#
#   git clone <upstream pynisher repository> /tmp/upstream && git -C /tmp/upstream checkout 686432b
#   bash scripts/upstream-tests.sh /tmp/upstream [pytest args...]
#
# Works in a scratch directory (never in this repository): upstream's test/ alone (its pynisher/
# must not shadow ours), a fresh venv with our wheel, pytest, scikit-learn and numpy from PyPI.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
upstream="$(cd "${1:?usage: upstream-tests.sh UPSTREAM_CHECKOUT [pytest args...]}" && pwd)"
shift
scratch="$(mktemp -d /tmp/pynisher-upstream-tests.XXXXXX)"
echo "scratch directory: $scratch"
cp -r "$upstream/test" "$scratch/test"
python3 -m venv "$scratch/venv"
(cd "$root" && .venv/bin/maturin build --release -q -o "$scratch/wheel")
"$scratch/venv/bin/pip" install -q --disable-pip-version-check "$scratch"/wheel/pynisher-*.whl \
    pytest==8.4.2 pytest-timeout==2.4.0 scikit-learn numpy
cd "$scratch"
exec "$scratch/venv/bin/python" -m pytest -ra -p no:cacheprovider --timeout=300 test "$@"
