#!/usr/bin/env bash
# The cgroup v2 suite's guest side: runs inside the VM of scripts/cgroup2-vm.sh (as root or as
# the unprivileged owner of the delegated cgroup $CGVM_CGROUP), started by scripts/cgroup2-suite.sh.
#
# Usage: cgroup2-guest.sh CLI DELEGATED_TESTS UNIT_TESTS
#   CLI              the prebuilt pynisher binary
#   DELEGATED_TESTS  the prebuilt test binary of crates/pynisher/tests/cgroup_v2_delegated.rs
#   UNIT_TESTS       the prebuilt unit-test binary of the pynisher crate (src/contain's tests)
#
# Layout. $CGVM_CGROUP (C) starts like a systemd Delegate=yes unit: controllers offered, none
# handed down, our shell inside. To give each check a delegated cgroup of its own in a known
# state, this script moves itself into C/runner and lets C hand memory and pids down — C then
# plays the slice above a unit, and each C/<check> plays a delegated unit:
#   alone:  the check execs in a fresh C/<check>, alone there (pynisher moves it into a leaf of
#           its own and gets memory + pids, see src/contain/delegation.rs);
#   beside: a shell stays in C/<check> next to the check (no controller can be handed down; the
#           cgroup must stay untouched, and Auto must still work).
# Each check prints one line (ok/FAIL, name, seconds); the exit status is 1 if any failed.
set -u
CLI=$1 DELEGATED=$2 UNIT=$3
C=${CGVM_CGROUP:?not started by cgroup2-vm.sh}
failed=0
who="$(id -un)"

now() { echo "${EPOCHREALTIME}"; }
report() { # name start status
    local dt
    dt=$(awk "BEGIN { printf \"%.1f\", $(now) - $2 }")
    if [ "$3" -eq 0 ]; then echo "ok   [$who] $1 (${dt}s)"; else echo "FAIL [$who] $1 (${dt}s, status $3)"; failed=1; fi
}

mkdir "$C/runner" && echo $$ >"$C/runner/cgroup.procs" &&
    echo "+memory +pids" >"$C/cgroup.subtree_control" || {
    echo "FAIL [$who] set-up: cannot prepare $C"
    exit 1
}

# check NAME alone|beside EXPECTED-STATUS COMMAND...: runs COMMAND in a fresh cgroup C/NAME and
# checks its exit status. The check's cgroup must stay a plain domain cgroup; beside another
# process (nothing may be handed down there) its cgroup.subtree_control must not change either.
check() {
    local name=$1 mode=$2 expected=$3 start status before after
    shift 3
    mkdir "$C/$name" || { report "$name (mkdir)" "$(now)" 1; return; }
    before="$(cat "$C/$name/cgroup.type") [$(cat "$C/$name/cgroup.subtree_control")]"
    start=$(now)
    if [ "$mode" = alone ]; then
        sh -c 'echo 0 >"$1/cgroup.procs" && shift && exec "$@"' sh "$C/$name" "$@"
    else
        sh -c 'echo 0 >"$1/cgroup.procs" && shift && "$@"' sh "$C/$name" "$@"
    fi
    status=$?
    after="$(cat "$C/$name/cgroup.type") [$(cat "$C/$name/cgroup.subtree_control")]"
    if [ "$status" -ne "$expected" ]; then
        echo "     exit status $status, expected $expected"
        status=1
    elif [ "${after%% *}" != domain ] || { [ "$mode" = beside ] && [ "$before" != "$after" ]; }; then
        echo "     $C/$name was '$before', is now '$after'"
        status=1
    else
        status=0
    fi
    report "$name ($mode; $after)" "$start" "$status"
}

# field NAME KEY: the value of KEY in the pretty-printed JSON report /tmp/NAME.json, its last
# occurrence (`backend`: the containment's, after the limits'). Plain shell: a python3 start
# costs seconds in the emulated VM.
field() { sed -n "s/^ *\"$2\": *\"\{0,1\}\([^\",]*\).*/\1/p" "/tmp/$1.json" | tail -n1; }
# expect NAME DESCRIPTION TEST...: one more check line, on the report of NAME.
expect() {
    local name=$1 what=$2 start
    shift 2
    start=$(now)
    "$@"
    report "$name: $what" "$start" $?
}
between() { [ "$1" -ge "$2" ] && [ "$1" -lt "$3" ]; }
MIB=1048576

# --- Rust: the engine from a delegated cgroup ------------------------------------------------
check rust-beside beside 0 "$DELEGATED" --ignored --exact --test-threads=1 \
    beside_other_processes_auto_works_without_controllers_and_leaves_the_callers_cgroup_untouched
PYNISHER_CLI=$CLI check rust-alone alone 0 "$DELEGATED" --ignored --exact --test-threads=1 \
    alone_in_a_delegated_cgroup_the_caller_moves_into_its_own_leaf_and_calls_get_every_controller
# The v2 backend's own tests that need its controllers (ignored on the host).
check rust-unit-v2-controllers alone 0 "$UNIT" --ignored --test-threads=1 contain::cgroup_v2::tests::needs_cgroup_v2_controllers::

# --- CLI ----------------------------------------------------------------------------------------
check cli-memory alone 123 "$CLI" --json=/tmp/cli-memory.json --memory 100MiB -- \
    dd if=/dev/zero of=/dev/null bs=300M count=1
expect cli-memory "memory_limit on cgroup2, peak <= 100 MiB" eval \
    '[ "$(field cli-memory status)" = memory_limit ] && [ "$(field cli-memory backend)" = cgroup2 ] &&
     between "$(field cli-memory peak_memory_bytes)" $((90 * MIB)) $((100 * MIB + 1))'
check cli-peak alone 0 "$CLI" --json=/tmp/cli-peak.json --memory 100MiB -- \
    dd if=/dev/zero of=/dev/null bs=50M count=1
expect cli-peak "exact peak of a 50 MiB buffer" eval \
    '[ "$(field cli-peak memory_measure)" = cgroup_peak ] &&
     between "$(field cli-peak peak_memory_bytes)" $((50 * MIB)) $((60 * MIB))'
check cli-cpu-children alone 124 "$CLI" --json=/tmp/cli-cpu-children.json --cpu-time 1s \
    --wall-time 60s -- sh -c "sh -c 'while :; do :; done' & sh -c 'while :; do :; done' & wait"
expect cli-cpu-children "cpu_timeout measured by the cgroup" eval \
    '[ "$(field cli-cpu-children status)" = cpu_timeout ] && [ "$(field cli-cpu-children cpu_measure)" = cgroup ]'
check cli-pids alone 122 "$CLI" --json=/tmp/cli-pids.json --max-processes 4 --wall-time 60s -- \
    sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait'
expect cli-pids "process_limit by pids.max" eval \
    '[ "$(field cli-pids status)" = process_limit ] && [ "$(field cli-pids processes_refused)" -gt 0 ] &&
     [ "$(field cli-pids kernel_process_limit)" = true ]'
check cli-escapee alone 0 "$CLI" --json=/tmp/cli-escapee.json --stdout /tmp/cli-escapee.out -- \
    sh -c 'setsid sleep 60 & echo $!'
escapee=$(cat /tmp/cli-escapee.out 2>/dev/null)
expect cli-escapee "the setsid escapee ($escapee) was killed" eval \
    '[ "$(field cli-escapee leftovers_killed)" = 1 ] && [ -n "$escapee" ] &&
     { [ ! -e "/proc/$escapee/stat" ] || [ "$(cut -d" " -f3 "/proc/$escapee/stat")" = Z ]; }'
# Beside another process: Auto falls through to a leaf without controllers, says so, works.
check cli-beside beside 0 "$CLI" --json=/tmp/cli-beside.json --memory 64MiB --max-processes 8 -- /bin/true
expect cli-beside "completed on cgroup2, the fallback noted" eval \
    '[ "$(field cli-beside status)" = completed ] && grep -q "other process" /tmp/cli-beside.json'

exit $failed
