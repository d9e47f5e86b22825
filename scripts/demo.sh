#!/usr/bin/env bash
# A demo of the main job: run code under limits and say exactly how it ended. The same engine,
# three faces: the Rust crate, the command line, and the Python package.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "== Rust: the seed document's first example (wall_time 2 s, my_function(t) sleeps t s)"
cargo run -q --release -p pynisher --example seed_example

echo
echo "== Command line: a solver that ignores SIGTERM, 1 s wall limit, 200 ms grace"
cargo build -q --release -p pynisher-cli
./target/release/pynisher --wall-time 1s --grace 200ms -- sh -c 'trap "" TERM; while :; do :; done' || echo "(exit status $?)"
echo
echo "== Command line: 3 sequential child processes burning ~0.6 s CPU each, under a 1 s CPU limit"
./target/release/pynisher --cpu-time 1s -- sh -c 'for i in 1 2 3; do timeout 0.6 sh -c "while :; do :; done"; done' || echo "(exit status $?)"
echo
echo "== Command line: a setsid double-forked grandchild spinning forever; the main process exits after 0.3 s"
./target/release/pynisher --json -- sh -c '(setsid sh -c "while :; do :; done" &); sleep 0.3' | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("status", r["status"], "| CPU counted", r["cpu_time_s"]["total"], "s | leftovers killed", r["leftovers_killed"], "| backend", r["containment"]["backend"])' || true

echo
echo "== Python: the seed document's second example (enforce_limits with capture_output)"
log="$(mktemp)"
bash scripts/dev-env.sh >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"
.venv/bin/python examples/seed_second_example.py
