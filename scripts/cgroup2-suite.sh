#!/usr/bin/env bash
# The cgroup v2 suite: builds the test binaries and the CLI on the host, then runs scripts/cgroup2-guest.sh
# in a VM with a pure cgroup v2 hierarchy (scripts/cgroup2-vm.sh), once as root and once as an
# unprivileged user who owns the delegated cgroup. Exit status: 0 all passed, 1 a check failed,
# 77 skipped (this machine cannot host the VM; the reason is printed).
#
# Software emulation runs code 10-40x slower, so everything is compiled here and each user gets
# one boot that runs every check. Knobs: CGROUP2_SUITE_USER (default pynisher-cg),
# CGROUP2_VM_MEM (default 2G here), and the VM tool's own (see its header).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
vm="$root/scripts/cgroup2-vm.sh"
user=${CGROUP2_SUITE_USER:-pynisher-cg}
export CGROUP2_VM_MEM=${CGROUP2_VM_MEM:-2G}

secs() { awk "BEGIN { print $EPOCHREALTIME - $1 }"; }
skip() {
    echo "SKIPPED cgroup v2 VM suite: $*"
    exit 77
}

t0=$EPOCHREALTIME
setup_log=$(mktemp)
bash "$vm" --setup >"$setup_log" 2>&1
status=$?
if [ $status -ne 0 ]; then
    reason=$(grep -m1 'cannot run here' "$setup_log" | sed 's/^[^:]*: cannot run here: //')
    cat "$setup_log" >&2
    rm -f "$setup_log"
    [ $status -eq 77 ] && skip "${reason:-the VM tool cannot run here (exit 77)}"
    echo "cgroup v2 VM suite: set-up failed (exit $status)" >&2
    exit 1
fi
rm -f "$setup_log"

# Build on the host: the CLI and the two test binaries, by their exact paths.
# The same features as scripts/test.sh's cargo test, so nothing is built twice.
cargo build --locked -q -p pynisher-cli --features pynisher/tokio || exit 1
bins=$(cargo test --locked -q -p pynisher --features tokio --no-run --message-format=json \
    --lib --test cgroup_v2_delegated 2>/dev/null |
    python3 -c '
import json, sys
found = {}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        found[m["target"]["name"]] = m["executable"]
print(found["cgroup_v2_delegated"], found["pynisher"])') || {
    echo "cgroup v2 VM suite: building the test binaries failed" >&2
    exit 1
}
read -r delegated unit <<<"$bins"
cli="$root/target/debug/pynisher"
built=$EPOCHREALTIME

failed=0
for as in root "$user"; do
    start=$EPOCHREALTIME
    args=()
    [ "$as" != root ] && args=(--user "$as")
    echo "--- in the VM as $as (delegated cgroup)"
    bash "$vm" "${args[@]}" -- bash scripts/cgroup2-guest.sh "$cli" "$delegated" "$unit"
    status=$?
    printf -- '--- as %s: exit %d, %.0f s with the boot\n' "$as" $status "$(secs "$start")"
    case $status in
        0) ;;
        77) skip "the VM did not start (as $as)" ;;
        *) failed=1 ;;
    esac
done
printf 'cgroup v2 VM suite: set-up and build %.0f s, in all %.0f s\n' \
    "$(awk "BEGIN { print $built - $t0 }")" "$(secs "$t0")"
exit $failed
