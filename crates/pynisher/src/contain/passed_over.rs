//! A container that also says why Auto passed over stronger backends (`select.rs`): every call
//! goes to the wrapped container; only the notes in [`CallContainer::containment`] grow.

use std::os::fd::{BorrowedFd, RawFd};

use super::{CallContainer, MainProcess, Register, Registration, Remains, Sample};
use crate::{Containment, CpuTime, Error};

pub(super) struct PassedOver {
    pub inner: Box<dyn CallContainer>,
    /// One line per backend passed over, with the reason.
    pub notes: Vec<String>,
}

impl CallContainer for PassedOver {
    fn containment(&self) -> Containment {
        let mut c = self.inner.containment();
        c.guarantees.notes.extend(self.notes.iter().cloned());
        c
    }
    fn enforces_memory(&self) -> bool {
        self.inner.enforces_memory()
    }
    fn enforces_processes(&self) -> bool {
        self.inner.enforces_processes()
    }
    fn samples_memory(&self) -> bool {
        self.inner.samples_memory()
    }
    fn set_inherited_memory(&mut self, bytes: u64) {
        self.inner.set_inherited_memory(bytes)
    }
    fn memory_measure(&self) -> crate::MemoryMeasure {
        self.inner.memory_measure()
    }
    fn adopt(&mut self, pid: i32) -> Result<(), Error> {
        self.inner.adopt(pid)
    }
    fn birth_cgroup(&self) -> Option<BorrowedFd<'_>> {
        self.inner.birth_cgroup()
    }
    fn self_join_fds(&self) -> Vec<RawFd> {
        self.inner.self_join_fds()
    }
    fn keep_registration(&mut self, registration: Registration) -> Option<Registration> {
        self.inner.keep_registration(registration)
    }
    fn work_ahead(&mut self, register: Register<'_>) {
        self.inner.work_ahead(register)
    }
    fn keep_processes(&mut self) {
        self.inner.keep_processes()
    }
    fn child_waits_for_adoption(&self) -> bool {
        self.inner.child_waits_for_adoption()
    }
    fn remains(&self) -> Remains {
        self.inner.remains()
    }
    fn sample(&mut self, main: MainProcess) -> Sample {
        self.inner.sample(main)
    }
    fn memory_peak(&mut self) -> Option<u64> {
        self.inner.memory_peak()
    }
    fn oom_kills(&mut self) -> u64 {
        self.inner.oom_kills()
    }
    fn processes_refused(&mut self) -> u64 {
        self.inner.processes_refused()
    }
    fn signal_all(&mut self, signal: i32) {
        self.inner.signal_all(signal)
    }
    fn kill_all(&mut self, main: MainProcess) -> Result<u64, Error> {
        self.inner.kill_all(main)
    }
    fn kill_lone_main(&mut self, main: rustix::process::Pid) -> bool {
        self.inner.kill_lone_main(main)
    }
    fn final_cpu(&mut self) -> Option<CpuTime> {
        self.inner.final_cpu()
    }
    fn close(&mut self) -> Result<(), Error> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::super::cgroup_v2::CgroupV2Container;
    use super::super::test_support::v2_env;
    use super::*;
    use crate::Limits;

    /// The wrapper around a real cgroup v2 leaf.
    mod needs_cgroup_v2 {
        use super::*;

        #[test]
        #[ignore = "needs a writable cgroup v2 hierarchy: scripts/test.sh runs it where the machine has that"]
        fn the_wrapper_adds_its_notes_and_hands_the_guard_the_inner_leaves() {
            let env = v2_env().expect("a writable cgroup v2 hierarchy");
            let inner = CgroupV2Container::open(&env, &Limits::new()).unwrap();
            let (inner_remains, inner_notes) =
                (inner.remains(), inner.containment().guarantees.notes);
            assert!(!inner_remains.leaves.is_empty());
            let mut wrapped = PassedOver {
                inner: Box::new(inner),
                notes: vec!["cgroup v1 not used: why".into()],
            };
            // The guard must empty the same leaves, whatever Auto noted.
            assert_eq!(wrapped.remains(), inner_remains);
            let notes = wrapped.containment().guarantees.notes;
            assert_eq!(notes.len(), inner_notes.len() + 1);
            assert_eq!(
                notes.last().map(String::as_str),
                Some("cgroup v1 not used: why")
            );
            wrapped.close().unwrap();
        }
    }
}
