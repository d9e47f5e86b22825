#!/usr/bin/env bash
# Runs the engine's unit tests that need what only some machines have (cgroup v1 as root, a
# writable cgroup v2 hierarchy, one without the memory and pids controllers). `cargo test` reports them `ignored`,
# with the need as the reason; this script runs each group where this machine has what it needs,
# and says SKIPPED with the reason where it does not. (Tests that need cgroup v2 controllers run
# in a VM: scripts/cgroup2-suite.sh.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

root=no; [ "$(id -u)" = 0 ] && root=yes
v1=no
if [ "$root" = yes ] && awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { found = 1 } END { exit !found }' /proc/self/mounts; then
    v1=yes
fi
v2=no v2_controllerless=no
v2_mount=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
if [ -n "$v2_mount" ] && [ -w "$v2_mount" ]; then
    v2=yes
    # "Without controllers": none of those the engine uses (memory, pids); hugetlb may be there.
    grep -qwE 'memory|pids' "$v2_mount/cgroup.controllers" 2>/dev/null || v2_controllerless=yes
fi

failed=0
group() { # group NEED_MET FILTER WHY_MISSING
    if [ "$1" = yes ]; then
        cargo test --locked -q -p pynisher --features tokio --lib -- --ignored "$2" || failed=1
    else
        echo "SKIPPED engine tests ${2%::}: $3"
    fi
}
group "$v1" needs_cgroup_v1:: "no cgroup v1 memory hierarchy, or not root"
group "$v2" needs_cgroup_v2:: "no writable cgroup v2 hierarchy"
group "$v2_controllerless" needs_controllerless_cgroup_v2:: "no writable cgroup v2 hierarchy without controllers"
both=no; [ "$v1" = yes ] && [ "$v2_controllerless" = yes ] && both=yes
group "$both" needs_cgroup_v1_and_controllerless_cgroup_v2:: "needs cgroup v1 as root and a controller-less cgroup v2"
exit "$failed"
