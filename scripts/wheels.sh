#!/usr/bin/env bash
# Builds the release artifacts into dist/: the sdist and abi3 wheels (CPython >= 3.9) tagged
# manylinux2014 (glibc 2.17) for x86_64 and aarch64. Each wheel carries the extension module
# pynisher._core and the `pynisher` command-line binary (pynisher/_bin/pynisher), both built with
# the stripped `dist` profile and linked by zig against glibc 2.17; each is checked with
# `auditwheel show` and `objdump -T` (no symbol newer than GLIBC_2.17) before the script succeeds.
#
#   bash scripts/wheels.sh                   # sdist + x86_64 + aarch64
#   WHEEL_TARGETS=x86_64 bash scripts/wheels.sh   # only some targets (space-separated)
#   NO_SDIST=1 bash scripts/wheels.sh        # skip the sdist
#   NONLINUX_TARGETS="aarch64-apple-darwin" ... # which non-Linux targets must stop with the one
#                                            # platform message (default: both macOS + Windows)
#
# No root needed: maturin, ziglang, cargo-zigbuild and auditwheel go into the project-local venv
# .venv-dist; a missing Rust target is added with rustup. Cargo's target/ is shared with the
# other builds, so a second run only relinks what changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv-dist"
python="${PYTHON:-python3}"
targets="${WHEEL_TARGETS:-x86_64 aarch64}"
glibc="2.17"            # manylinux2014
tag="manylinux_2_17"
out="$root/dist"
step() { printf '==> %s\n' "$*" >&2; }

# Pinned build tooling; bump deliberately.
tools=("maturin==1.16.0" "ziglang==0.17.0" "cargo-zigbuild==0.24.0" "auditwheel==6.8.2")
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.pynisher-tools"
want="$(printf '%s\n' "${tools[@]}")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    step "installing ${tools[*]} into .venv-dist"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "${tools[@]}"
    printf '%s' "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
mkdir -p "$out"

# The host's own CLI binary sits in python/pynisher/_bin for the dev install (scripts/dev-env.sh);
# each wheel build puts its target's binary there, so put the host's back at the end.
bin_dir="$root/python/pynisher/_bin"
saved="$(mktemp -d)"
if [ -e "$bin_dir/pynisher" ]; then cp -p "$bin_dir/pynisher" "$saved/pynisher"; fi
restore() {
    rm -f "$bin_dir/pynisher"
    if [ -e "$saved/pynisher" ]; then cp -p "$saved/pynisher" "$bin_dir/pynisher"; fi
    rm -rf "$saved"
}
trap restore EXIT

# Fails unless every versioned glibc symbol that `file` needs is at most GLIBC_2.17 and no strong
# undefined symbol is unversioned (glibc's `gettid` wrapper, say, exists only from 2.30). Weak
# ones are fine: std looks those up and copes when they are missing (statx, getrandom, ...).
check_symbols() {
    local file="$1" bad
    bad="$(objdump -T "$file" | awk '
        / GLIBC_/ { for (i = 1; i <= NF; i++) if ($i ~ /^\(?GLIBC_[0-9.]+\)?$/) {
            v = $i; gsub(/[()]|GLIBC_/, "", v); split(v, p, ".");
            if (p[1] > 2 || (p[1] == 2 && p[2] > 17)) print $NF " needs GLIBC_" v } }
        $2 != "w" && /\*UND\*/ && !/GLIBC_|GCC_/ && $NF !~ /^(Py|_Py|PyInit)/ && $(NF-1) !~ /GLIBC|Base/ {
            print $NF " is undefined without a version" }')"
    if [ -n "$bad" ]; then
        printf 'error: %s needs symbols newer than glibc %s:\n%s\n' "$file" "$glibc" "$bad" >&2
        return 1
    fi
}

for arch in $targets; do
    triple="$arch-unknown-linux-gnu"
    if ! rustup target list --installed | grep -qx "$triple"; then
        step "rustup target add $triple"
        rustup target add "$triple"
    fi
    step "$arch: pynisher command (cargo zigbuild, profile dist, glibc $glibc)"
    # Its own target dir: maturin builds with other cargo settings (target-applies-to-host), and
    # sharing one dir would make each build throw away the other's compiled dependencies.
    CARGO_TARGET_DIR="$root/target/dist-cli" \
        cargo zigbuild --locked --profile dist -p pynisher-cli --target "$triple.$glibc"
    cli="$root/target/dist-cli/$triple/dist/pynisher"
    check_symbols "$cli"
    mkdir -p "$bin_dir"
    cp "$cli" "$bin_dir/pynisher"
    chmod 755 "$bin_dir/pynisher"

    step "$arch: wheel (maturin --zig, $tag)"
    rm -f "$out"/pynisher-*-*"$arch".whl
    maturin build --locked --profile dist --zig --compatibility manylinux2014 \
        --target "$triple" --out "$out"
    wheel="$(ls "$out"/pynisher-*-*"${tag}_$arch".whl)"

    step "$arch: checks"
    unpacked="$(mktemp -d)"
    "$venv/bin/python" -m zipfile -e "$wheel" "$unpacked"
    check_symbols "$unpacked"/pynisher/_core*.so
    if ! "$venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
info = zipfile.ZipFile(sys.argv[1]).getinfo("pynisher/_bin/pynisher")
sys.exit(0 if (info.external_attr >> 16) & 0o111 else 1)
PY
    then
        echo "error: $wheel has no executable pynisher/_bin/pynisher" >&2
        exit 1
    fi
    rm -rf "$unpacked"
    # auditwheel prints the tag the wheel is consistent with; it must be the one it carries.
    report="$(auditwheel show "$wheel")"
    printf '%s\n' "$report"
    if ! printf '%s' "$report" | tr '\n' ' ' | grep -q "consistent with the following platform tag: \"${tag}_$arch\""; then
        echo "error: auditwheel does not confirm ${tag}_$arch for $wheel" >&2
        exit 1
    fi
    size="$(stat -c %s "$wheel")"
    if [ "$size" -gt $((3 * 1024 * 1024)) ]; then
        echo "error: $wheel is $size bytes, over 3 MiB" >&2
        exit 1
    fi
    if [ "$arch" != "$(uname -m)" ]; then
        # Emulation is only a smoke test: qemu-user loads and runs the binary (glibc 2.17 symbols
        # against a newer loader), but its clone emulation refuses the engine's fork (EINVAL), so
        # no limited run is possible there.
        qemu="qemu-$arch" sysroot="/usr/$arch-linux-gnu"
        if command -v "$qemu" > /dev/null && [ -d "$sysroot" ]; then
            version="$(QEMU_LD_PREFIX="$sysroot" "$qemu" "$bin_dir/pynisher" --version)"
            step "$arch: the bundled pynisher runs under $qemu: $version"
        else
            step "skipped: running the $arch binary under emulation (needs $qemu and $sysroot: apt-get install qemu-user libc6-arm64-cross)"
        fi
    fi
    step "$arch: $(basename "$wheel") ($size bytes)"
done

# The sdist on macOS/Windows must stop at once with the engine's one message (crates/pynisher/
# build.rs), not with rustc errors. Checked for every such Rust target installed here.
for triple in ${NONLINUX_TARGETS-aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-msvc}; do
    if ! rustup target list --installed | grep -qx "$triple"; then
        step "skipped: non-Linux message for $triple (target not installed: rustup target add $triple)"
        continue
    fi
    step "$triple: the build stops with one message"
    if log="$(cargo check --locked -p pynisher --target "$triple" 2>&1)"; then
        echo "error: cargo check --target $triple succeeded; it must stop with the platform message" >&2
        exit 1
    fi
    errors="$(printf '%s\n' "$log" | grep '^error' || true)"
    if [ "$(printf '%s\n' "$errors" | grep -c 'pynisher supports Linux only')" != 1 ] \
        || printf '%s\n' "$errors" | grep -v -e 'pynisher supports Linux only' -e 'build script logged errors' | grep -q .; then
        printf 'error: building for %s gave other errors than the one message:\n%s\n' "$triple" "$log" >&2
        exit 1
    fi
    printf '%s\n' "$errors" | head -1 >&2
done

if [ -z "${NO_SDIST:-}" ]; then
    step "sdist"
    rm -f "$out"/pynisher-*.tar.gz
    maturin sdist --out "$out"
fi
ls -l "$out"
