//! Stops the build for any target but Linux with one message, instead of the page of errors
//! rustc would give for the Linux-only system calls the engine uses (pidfd, cgroups, prctl, ...).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        println!(
            "cargo::error=pynisher supports Linux only (kernel 5.3 or newer; wheels for x86_64 \
             and aarch64), not `{os}`: its engine needs pidfd, cgroups, prctl and /proc. \
             Instead: build and run it on Linux (a VM, a container, WSL 2); Python users on \
             macOS or Windows can keep upstream pynisher 1.x (`pip install \"pynisher<2\"`)."
        );
    }
}
