//! The result channel is bounded: a child writing junk or an oversized frame to its result
//! descriptor cannot make the caller buffer it; the call is ended and says why.

mod common;

use std::time::{Duration, Instant};

use common::{py, sh};
use pynisher::{Limits, Status};

/// The tests of this file take turns: each measures this process's peak memory.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's peak resident memory so far (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Runs `command` for its result under a 64 MiB result limit; checks that it ended soon, refused,
/// and that the caller's peak memory grew by far less than what the child wrote.
fn refused(command: pynisher::Command, why: &str) {
    let _turn = one_at_a_time();
    let before = peak_rss();
    let started = Instant::now();
    let outcome = Limits::new()
        .result_limit(64 << 20)
        .memory(64 << 20)
        .wall_time(Duration::from_secs(60))
        .spawn_command_for_result(&command)
        .unwrap()
        .wait()
        .unwrap();
    let elapsed = started.elapsed();
    let grew = peak_rss().saturating_sub(before);
    match &outcome.status {
        Status::ResultUndecodable { reason } => assert!(reason.contains(why), "{reason}"),
        other => panic!("expected result_undecodable ({why}), got {other:?}"),
    }
    assert!(outcome.killed, "the writer is killed, not waited for");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        grew < 16 << 20,
        "the caller's peak memory grew by {grew} bytes"
    );
}

#[test]
fn a_gibibyte_of_junk_on_the_result_descriptor_is_refused_at_once_and_not_buffered() {
    refused(
        sh("head -c 1073741824 /dev/zero >&$PYNISHER_RESULT_FD"),
        "magic",
    );
}

#[test]
fn a_frame_announcing_more_than_the_result_limit_is_refused_at_its_header() {
    refused(
        py("import os, struct\n\
            fd = int(os.environ['PYNISHER_RESULT_FD'])\n\
            os.write(fd, struct.pack('<4sBBQ', b'PYNR', 1, 0, 1 << 30))\n\
            chunk = bytes(1 << 20)\n\
            for _ in range(1024): os.write(fd, chunk)\n"),
        "result limit of 67108864 bytes",
    );
}

#[test]
fn bytes_past_a_frames_announced_length_are_refused() {
    refused(
        py("import os, struct\n\
            fd = int(os.environ['PYNISHER_RESULT_FD'])\n\
            os.write(fd, struct.pack('<4sBBQ', b'PYNR', 1, 0, 3) + b'abc')\n\
            chunk = bytes(1 << 20)\n\
            for _ in range(1024): os.write(fd, chunk)\n"),
        "announced",
    );
}

#[test]
fn a_frame_within_the_result_limit_arrives_whole() {
    let _turn = one_at_a_time();
    let outcome = Limits::new()
        .result_limit(8 << 20)
        .spawn_command_for_result(&py("import os, struct\n\
            fd = int(os.environ['PYNISHER_RESULT_FD'])\n\
            data = bytes(range(256)) * 32768\n\
            os.write(fd, struct.pack('<4sBBQ', b'PYNR', 1, 0, len(data)))\n\
            view = memoryview(data)\n\
            while view: view = view[os.write(fd, view):]\n"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(outcome.status, Status::Completed);
    assert_eq!(outcome.value.map(|v| v.len()), Some(8 << 20));
}
