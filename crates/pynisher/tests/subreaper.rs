//! A supervisor that is a child subreaper (as the `pynisher` command is) gets the call's orphans
//! re-parented to it: it must reap them, and must never reap the main process behind its own back.
//! Its own test binary, because the subreaper attribute is process-wide.

mod common;

use std::time::Duration;

use common::{backends, is_alive, on, sh, zombie_children};
use pynisher::Status;

#[test]
fn a_subreaper_supervisor_reaps_orphans_and_still_reports_the_main_process() {
    pynisher::become_subreaper().unwrap();
    for b in backends() {
        let o = on(b)
            .capture_output(true)
            .wall_time(Duration::from_millis(300))
            .run_command(&sh("sleep 1000 & echo $!; sleep 1000 & wait"))
            .unwrap();
        assert_eq!(o.status, Status::WallTimeout, "{b:?} {o:?}");
        let pid: i32 = o.stdout.unwrap().text().trim().parse().unwrap();
        assert!(!is_alive(pid), "{b:?}");
        let o = on(b)
            .capture_output(true)
            .run_command(&sh("sleep 1000 & echo $!"))
            .unwrap();
        assert_eq!(o.status, Status::Completed, "{b:?}");
        assert_eq!(o.exit_code, Some(0));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(zombie_children(), 0, "{b:?}: orphans left as our zombies");
    }
}
