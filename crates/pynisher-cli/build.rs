//! Links the unwinder statically (`libgcc_eh.a`, what `gcc -static-libgcc` does) on glibc Linux,
//! so that the `pynisher` binary needs no `libgcc_s.so.1`: the dynamic loader then maps one
//! library less at every start, and libgcc_s's constructor (`__cpu_indicator_init`, a series of
//! `cpuid`s that trap to the hypervisor in a virtual machine) no longer runs. Measured on the
//! project's 2-CPU virtual machine: `pynisher --version` 0.85 ms instead of 0.93 ms (timeout
//! --version 0.81 ms), interleaved, 400 runs; docs/benchmarks.md.
//!
//! Rust's std links `-lgcc_s` for its unwinder; with `libgcc_eh.a` linked whole before it, every
//! `_Unwind_*` symbol is already defined and `--as-needed` drops libgcc_s. Panics still unwind
//! (`catch_unwind` in `main`). Nothing is done where the linker's `libgcc_eh.a` cannot be found
//! (another C compiler, a cross build): the binary then loads libgcc_s as before.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    // The C compiler that links the binary: the configured linker, or `cc` for a native build
    // (a cross build without a configured linker would find the host's archive: skip it).
    let linker = match std::env::var("RUSTC_LINKER") {
        Ok(linker) => linker,
        Err(_) if var("TARGET") == var("HOST") => "cc".to_string(),
        Err(_) => return,
    };
    let Ok(out) = Command::new(&linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let archive = Path::new(&printed);
    // A compiler that does not have it prints the bare name back.
    if !out.status.success() || !archive.is_absolute() || !archive.is_file() {
        return;
    }
    let Some(dir) = archive.parent() else {
        return;
    };
    println!("cargo::rustc-link-search=native={}", dir.display());
    println!("cargo::rustc-link-lib=static:+whole-archive,+verbatim=libgcc_eh.a");
}
