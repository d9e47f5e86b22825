//! The kernel floor: every call needs `pidfd_open` (Linux 5.3). On an older kernel the system call
//! fails with ENOSYS; a seccomp filter makes this kernel answer the same way, and pynisher must
//! then fail with a message that names the version it needs (exit status 125), leaving nothing
//! running.

mod common;

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

/// A seccomp program: `pidfd_open` fails with ENOSYS (as on Linux < 5.3), everything else runs.
fn pidfd_open_enosys_filter() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    vec![
        stmt(load, 4), // seccomp_data.arch
        jeq(AUDIT_ARCH, 0, 3),
        stmt(load, 0), // seccomp_data.nr
        jeq(libc::SYS_pidfd_open as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Runs `pynisher ARGS` with `pidfd_open` answering ENOSYS in it and all its descendants.
fn run_without_pidfd_open(args: &[&str]) -> std::process::Output {
    let mut filter = pidfd_open_enosys_filter();
    let mut command = common::pynisher();
    command.args(args).stdin(Stdio::null());
    let (filter_addr, filter_len) = (filter.as_mut_ptr() as usize, filter.len() as u16);
    // SAFETY: the closure runs in the forked child before exec and only makes two prctl(2)
    // system calls (async-signal-safe); the second reads the filter, which the child has as fork
    // copied the parent's memory, and which the parent keeps alive until the child has exited.
    unsafe {
        command.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter_len,
                filter: filter_addr as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("pynisher starts");
    drop(filter);
    output
}

#[test]
fn kernel_without_pidfd_open_is_refused_naming_linux_5_3() {
    let marker = format!("kernel-floor-{}", std::process::id());
    let out = run_without_pidfd_open(&[
        "--wall-time",
        "5s",
        "--",
        "sh",
        "-c",
        &format!("echo {marker}; sleep 3"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert!(
        stderr.contains("lacks pidfd_open: pynisher needs Linux 5.3 or newer"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("this kernel (Linux "), "stderr: {stderr}");
    // The program was stopped before it was released: it never ran.
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&marker),
        "the program ran"
    );
}

#[test]
fn same_run_without_the_filter_completes() {
    // The control: the only difference above is the filter.
    let out = common::run(&["--wall-time", "5s", "--", "true"]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
}
