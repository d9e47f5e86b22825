//! The memory limit without a memory controller: the process-group backend samples the resident
//! memory of the call's processes and kills at the limit (issue 11 item 2), and says that this is
//! weaker; strict mode refuses what cannot be fully enforced (item 3).

mod common;

use std::time::Duration;

use common::{py, sh};
use pynisher::{Backend, Error, Limits, MemoryLimitKind, MemoryMeasure, Status, Weakness};

const MIB: u64 = 1 << 20;

fn process_group() -> Limits {
    Limits::new()
        .backend(Backend::ProcessGroup)
        .wall_time(Duration::from_secs(20))
}

#[test]
fn a_program_that_touches_past_the_limit_is_killed_as_a_memory_limit() {
    // 300 MiB written (not only reserved), held until killed.
    let o = process_group()
        .memory(100 * MIB)
        .run_command(&py(
            "import time; b = bytearray(b'x') * (300 << 20); time.sleep(10)",
        ))
        .unwrap();
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    assert!(o.killed);
    assert_eq!(o.signal, Some(libc::SIGKILL));
    assert_eq!(o.memory_limit_kind, Some(MemoryLimitKind::Sampled));
    assert_eq!(o.memory_measure, MemoryMeasure::Sampled);
    let peak = o.peak_memory.unwrap();
    assert!(peak >= 100 * MIB, "sampled peak {peak}");
    // Killed during the allocation, long before the 10 s sleep would have ended.
    assert!(o.wall_time < Duration::from_secs(10), "{:?}", o.wall_time);
    assert!(o.weaknesses.contains(&Weakness::MemorySampled));
}

#[test]
fn memory_of_child_processes_is_summed() {
    // Three processes of 60 MiB each: none alone reaches 150 MiB, together they do.
    let o = process_group()
        .memory(150 * MIB)
        .run_command(&sh(
            "for i in 1 2 3; do python3 -c \"import time; b = bytearray(b'x') * (60 << 20); time.sleep(10)\" & done; wait",
        ))
        .unwrap();
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    assert!(o.peak_memory.unwrap() >= 150 * MIB);
}

#[test]
fn reserved_but_untouched_address_space_is_not_memory() {
    // 1 GiB reserved, 20 MiB touched: an address-space limit of 100 MiB would refuse the mmap.
    let o = process_group()
        .memory(100 * MIB)
        .run_command(&py(
            "import mmap; m = mmap.mmap(-1, 1 << 30); m[: 20 << 20] = b'x' * (20 << 20); print('ok')",
        ))
        .unwrap();
    assert_eq!(o.status, Status::Completed, "{o:?}");
    assert_eq!(o.exit_code, Some(0));
    let peak = o.peak_memory.unwrap();
    assert!(peak < 100 * MIB, "sampled peak {peak}");
}

#[test]
fn a_closures_peak_between_two_samples_is_still_reported() {
    // 60 MiB written and freed long before the first sample (100 ms in, under a 1 GiB limit):
    // no sample sees it, the kernel's high-water mark of the process does.
    // SAFETY: the closure only allocates, frees and sleeps.
    let o = unsafe {
        process_group().memory(1 << 30).spawn_closure_unchecked(|| {
            let v = vec![1u8; 60 << 20];
            let len = std::hint::black_box(&v).len();
            drop(v);
            std::thread::sleep(Duration::from_millis(400));
            len
        })
    }
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(o.status, Status::Completed, "{o:?}");
    assert_eq!(o.memory_measure, MemoryMeasure::Sampled);
    let peak = o.peak_memory.unwrap();
    assert!(
        peak >= 60 * MIB,
        "reported peak {peak} below the 60 MiB the closure wrote"
    );
}

/// Maps `bytes` of address space in this (the caller's) process without touching it, as thread
/// stacks and allocator arenas do; returns it for unmapping.
fn reserve(bytes: usize) -> usize {
    // SAFETY: a fresh anonymous PROT_NONE mapping at an address the kernel picks; nothing else
    // refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as usize
}

#[test]
fn a_closure_of_a_caller_with_a_large_address_space_keeps_its_headroom() {
    // The caller holds 600 MiB of address space (and 200 MiB resident): under a 256 MiB limit, a
    // closure must still get 100 MiB of real memory, and the caller's pages are not the call's.
    let reserved = reserve(600 << 20);
    let held = vec![7u8; 200 << 20];
    std::hint::black_box(&held);
    // SAFETY: the closure only allocates and sleeps.
    let o = unsafe {
        process_group()
            .memory(256 * MIB)
            .spawn_closure_unchecked(|| {
                let v = vec![1u8; 100 << 20];
                std::thread::sleep(Duration::from_millis(100));
                std::hint::black_box(&v).len()
            })
    }
    .unwrap()
    .wait()
    .unwrap();
    // SAFETY: unmaps exactly the mapping made above, which nothing uses.
    unsafe { libc::munmap(reserved as *mut libc::c_void, 600 << 20) };
    assert_eq!(o.status, Status::Completed, "{o:?}");
    assert_eq!(o.value, Some(100 << 20));
    let peak = o.peak_memory.unwrap();
    assert!(
        (90 * MIB..200 * MIB).contains(&peak),
        "sampled peak {peak} should be the closure's 100 MiB, not the caller's memory"
    );
}

#[test]
fn a_closure_that_allocates_past_the_sampled_limit_is_a_memory_limit() {
    // SAFETY: the closure only allocates and sleeps.
    let o = unsafe {
        process_group()
            .memory(100 * MIB)
            .spawn_closure_unchecked(|| {
                let v = vec![1u8; 300 << 20];
                std::thread::sleep(Duration::from_secs(10));
                std::hint::black_box(&v).len()
            })
    }
    .unwrap()
    .wait()
    .unwrap();
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    assert_eq!(o.memory_limit_kind, Some(MemoryLimitKind::Sampled));
}

#[test]
fn the_process_group_lists_its_weaknesses_for_what_the_call_asked() {
    let o = process_group().run_command(&sh("true")).unwrap();
    assert_eq!(o.weaknesses, vec![Weakness::EscapeesNotContained]);
    let o = process_group()
        .memory(64 * MIB)
        .max_processes(8)
        .run_command(&sh("true"))
        .unwrap();
    assert_eq!(
        o.weaknesses,
        vec![
            Weakness::EscapeesNotContained,
            Weakness::MemorySampled,
            Weakness::ProcessLimitPolled
        ]
    );
}

#[test]
fn strict_mode_refuses_a_call_the_backend_cannot_fully_enforce() {
    let marker = std::env::temp_dir().join(format!("pyn-strict-{}", std::process::id()));
    let err = process_group()
        .memory(64 * MIB)
        .strict(true)
        .run_command(&sh(&format!("touch {}", marker.display())))
        .unwrap_err();
    match &err {
        Error::NotEnforceable {
            backend,
            weaknesses,
        } => {
            assert_eq!(*backend, "none");
            assert!(weaknesses.contains(&Weakness::MemorySampled));
        }
        other => panic!("expected NotEnforceable, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with("strict mode: backend none"), "{text}");
    assert!(text.contains("sampling"), "{text}");
    assert!(!marker.exists(), "the refused program must not have run");
}

#[test]
fn strict_mode_runs_exactly_the_calls_without_weaknesses() {
    for b in common::backends() {
        let limits = Limits::new().backend(b).memory(64 * MIB).max_processes(8);
        let loose = limits.clone().run_command(&sh("exit 0")).unwrap();
        assert_eq!(loose.status, Status::Completed, "{b:?}");
        let strict = limits.strict(true).run_command(&sh("exit 0"));
        match strict {
            Ok(o) => {
                assert!(loose.weaknesses.is_empty(), "{b:?} {:?}", loose.weaknesses);
                assert!(o.weaknesses.is_empty());
            }
            Err(Error::NotEnforceable { weaknesses, .. }) => {
                assert_eq!(weaknesses, loose.weaknesses, "{b:?}")
            }
            Err(other) => panic!("{b:?}: {other}"),
        }
    }
}
