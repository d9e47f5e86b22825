//! Choosing the backend for a call: the Auto rule, nothing else. What the machine offers is found
//! by `detect.rs`; the backends build the containers.
//!
//! # How [`Backend::Auto`] chooses
//!
//! A limit *needs* a controller when the kernel must enforce it: the `memory` controller for a
//! memory limit of kind [`MemoryLimitKind::Auto`] or [`MemoryLimitKind::Resident`], the `pids`
//! controller for a process limit. In order, the first that applies wins:
//!
//! 1. **cgroup v2** when a writable v2 hierarchy gives our leaves every controller the limits need
//!    and also the `memory` controller (so the peak is measured), or when there is no cgroup v1.
//! 2. **cgroup v1** when we are root and the `memory`, `cpuacct`, `pids` and `freezer` hierarchies
//!    are mounted and writable.
//! 3. **controller-less cgroup v2** when a v2 hierarchy is writable at all: membership, exact CPU
//!    time and `cgroup.kill` still hold; the memory limit becomes `RLIMIT_AS` per process and the
//!    process limit is enforced by the supervisor's polling.
//! 4. **process group** otherwise.
//!
//! A v2 hierarchy without a memory controller ranks below v1 even for calls without limits: v1
//! measures the peak memory of the call, and a closure child (forked, not created in its cgroup:
//! docs/architecture.md, step 5) joins a v1 leaf by itself without the grace period that moving a
//! process into a v2 cgroup costs (5–16 ms per call here).
//!
//! A memory limit of the explicit kind [`MemoryLimitKind::Resident`] that no cgroup can enforce is
//! an [`Error::BackendUnavailable`] naming what is missing, never a silent downgrade to the
//! address-space limit. A forced backend that does not work here is the same error, with the
//! reason.
//!

use super::cgroup_v1::CgroupV1Container;
use super::cgroup_v2::CgroupV2Container;
use super::detect::{environment, v2_present};
use super::passed_over::PassedOver;
use super::process_group::ProcessGroupContainer;
use super::CallContainer;
use crate::{Backend, Error, Limits, MemoryLimitKind};

/// The backends that work on this machine for this process, strongest first.
///
/// A cgroup v2 hierarchy with the `memory` and `pids` controllers ranks above cgroup v1; a v2
/// hierarchy without them ranks below it (it still contains every descendant and measures CPU
/// exactly). [`Backend::ProcessGroup`] is always last and always present.
///
/// ```
/// let backends = pynisher::available_backends();
/// assert_eq!(backends.last(), Some(&pynisher::Backend::ProcessGroup));
/// ```
pub fn available_backends() -> Vec<Backend> {
    let env = environment();
    let mut out = Vec::new();
    let v2_full = env
        .v2()
        .as_ref()
        .is_ok_and(|v2| v2.has_memory && v2.has_pids);
    if v2_full {
        out.push(Backend::CgroupV2);
    }
    if env.v1.is_ok() {
        out.push(Backend::CgroupV1);
    }
    if env.v2().is_ok() && !v2_full {
        out.push(Backend::CgroupV2);
    }
    out.push(Backend::ProcessGroup);
    out
}

/// The backend [`Backend::Auto`] tries first: the first of [`available_backends`], found without
/// detecting a cgroup v2 hierarchy that could only rank below a usable cgroup v1 (no probe leaf,
/// no sweep there: cheaper for a process that makes one call).
///
/// ```
/// let first = pynisher::preferred_backend();
/// assert_eq!(Some(&first), pynisher::available_backends().first());
/// ```
pub fn preferred_backend() -> Backend {
    let env = environment();
    match env.v2_for_auto() {
        Some(Ok(v2)) if v2.has_memory && v2.has_pids => Backend::CgroupV2,
        _ if env.v1.is_ok() => Backend::CgroupV1,
        Some(Ok(_)) => Backend::CgroupV2,
        _ => Backend::ProcessGroup,
    }
}

/// Resolves `limits.backend` into a fresh container for one call (see the module doc for the rule).
pub(crate) fn open(limits: &Limits) -> Result<Box<dyn CallContainer>, Error> {
    let need_memory =
        limits.memory.is_some() && limits.memory_kind != MemoryLimitKind::AddressSpace;
    let must_enforce_memory =
        limits.memory.is_some() && limits.memory_kind == MemoryLimitKind::Resident;
    let need_pids = limits.max_processes.is_some();
    if limits.backend == Backend::ProcessGroup {
        if must_enforce_memory {
            return Err(Error::BackendUnavailable {
                backend: Backend::ProcessGroup.name(),
                reason: "a resident memory limit needs a cgroup memory controller, and the \
                         process-group backend has none; use MemoryLimitKind::AddressSpace for an \
                         address-space limit"
                    .to_string(),
            });
        }
        // No cgroup detection at all for the fallback: it must stay cheap and side-effect free.
        return open_process_group(limits);
    }
    let env = environment();

    let no_resident = |backend: Backend, why: &str| Error::BackendUnavailable {
        backend: backend.name(),
        reason: format!(
            "a resident memory limit needs a cgroup memory controller, and {why}; \
             use MemoryLimitKind::AddressSpace for an address-space limit"
        ),
    };

    match limits.backend {
        Backend::CgroupV2 => {
            let v2 = env
                .v2()
                .as_ref()
                .map_err(|reason| Error::BackendUnavailable {
                    backend: Backend::CgroupV2.name(),
                    reason: reason.clone(),
                })?;
            if must_enforce_memory && !v2.has_memory {
                return Err(no_resident(
                    Backend::CgroupV2,
                    &format!("{} has no memory controller", v2.parent.display()),
                ));
            }
            Ok(Box::new(CgroupV2Container::open(v2, limits)?))
        }
        Backend::CgroupV1 => {
            let v1 = env
                .v1
                .as_ref()
                .map_err(|reason| Error::BackendUnavailable {
                    backend: Backend::CgroupV1.name(),
                    reason: reason.clone(),
                })?;
            Ok(Box::new(CgroupV1Container::open(v1, limits)?))
        }
        Backend::ProcessGroup => {
            if must_enforce_memory {
                return Err(no_resident(
                    Backend::ProcessGroup,
                    "the process-group backend has none",
                ));
            }
            open_process_group(limits)
        }
        Backend::Auto => {
            // A cgroup step that fails falls through to the next one, and the reason goes into
            // the outcome's notes: a weaker containment is never passed off as a stronger one,
            // and never chosen without a word.
            let mut passed_over = Vec::new();
            // A v2 that could only rank below a usable v1 is not even detected (`v2_for_auto`).
            match env.v2_for_auto() {
                Some(Ok(v2)) => {
                    let has_needed = (!need_memory || v2.has_memory) && (!need_pids || v2.has_pids);
                    if has_needed && (v2.has_memory || env.v1.is_err()) {
                        match CgroupV2Container::open(v2, limits) {
                            Ok(c) => return Ok(Box::new(c)),
                            Err(e) => {
                                passed_over.push(format!("cgroup v2 not used: {}", chain(&e)))
                            }
                        }
                    }
                }
                Some(Err(reason)) if v2_present(reason) => {
                    passed_over.push(format!("cgroup v2 not used: {reason}"));
                }
                Some(Err(_)) | None => {}
            }
            if let Ok(v1) = &env.v1 {
                match CgroupV1Container::open(v1, limits) {
                    Ok(c) => return Ok(noted(Box::new(c), passed_over)),
                    Err(e) => passed_over.push(format!("cgroup v1 not used: {}", chain(&e))),
                }
            }
            if must_enforce_memory {
                let why = match (&env.v1, env.v2()) {
                    (Err(v1), Err(v2)) => format!("cgroup v1: {v1}; cgroup v2: {v2}"),
                    (Err(v1), Ok(v2)) if !v2.has_memory => {
                        format!(
                            "cgroup v1: {v1}; cgroup v2: {} has no memory controller",
                            v2.parent.display()
                        )
                    }
                    _ => format!(
                        "no cgroup leaf could be created ({})",
                        passed_over.join("; ")
                    ),
                };
                return Err(no_resident(Backend::Auto, &why));
            }
            if let Ok(v2) = env.v2() {
                if !v2.has_memory {
                    match CgroupV2Container::open(v2, limits) {
                        Ok(c) => return Ok(noted(Box::new(c), passed_over)),
                        Err(e) => passed_over.push(format!("cgroup v2 not used: {}", chain(&e))),
                    }
                }
            }
            Ok(noted(open_process_group(limits)?, passed_over))
        }
    }
}

fn open_process_group(limits: &Limits) -> Result<Box<dyn CallContainer>, Error> {
    Ok(Box::new(ProcessGroupContainer::new(limits)?))
}

/// An error with its causes, for a note.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
        source = s.source();
    }
    text
}

/// Adds to `inner`'s notes why Auto passed over stronger backends.
fn noted(inner: Box<dyn CallContainer>, passed_over: Vec<String>) -> Box<dyn CallContainer> {
    if passed_over.is_empty() {
        inner
    } else {
        Box::new(PassedOver {
            inner,
            notes: passed_over,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_process_group_refuses_an_explicit_resident_memory_limit() {
        let limits = Limits::new()
            .backend(Backend::ProcessGroup)
            .memory(1 << 30)
            .memory_kind(MemoryLimitKind::Resident);
        match open(&limits) {
            Err(Error::BackendUnavailable { backend, reason }) => {
                assert_eq!(backend, "none");
                assert!(reason.contains("memory controller"), "{reason}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a process group cannot enforce resident memory"),
        }
    }

    #[test]
    fn available_backends_lists_what_this_machine_has_strongest_first() {
        let env = environment();
        let list = available_backends();
        assert_eq!(list.last(), Some(&Backend::ProcessGroup));
        assert_eq!(list.contains(&Backend::CgroupV1), env.v1.is_ok());
        assert_eq!(list.contains(&Backend::CgroupV2), env.v2().is_ok());
        eprintln!(
            "available here: {list:?}; v1: {:?}; v2: {:?}",
            env.v1,
            env.v2()
        );
    }

    /// A controller-less cgroup v2 cannot hold a resident-memory limit.
    mod needs_controllerless_cgroup_v2 {
        use super::*;

        #[test]
        #[ignore = "needs a writable cgroup v2 hierarchy without controllers: scripts/test.sh runs it where the machine has that"]
        fn explicit_resident_limit_on_a_controllerless_v2_is_refused() {
            let env = environment();
            let v2 = env.v2().as_ref().expect("a writable cgroup v2 hierarchy");
            assert!(
                !v2.has_memory,
                "this cgroup v2 hierarchy has a memory controller"
            );
            let limits = Limits::new()
                .backend(Backend::CgroupV2)
                .memory(1 << 30)
                .memory_kind(MemoryLimitKind::Resident);
            let err = open(&limits).err().expect("must be refused");
            assert!(err.to_string().contains("no memory controller"), "{err}");
        }
    }

    /// The Auto rule between cgroup v1 and a controller-less cgroup v2.
    mod needs_cgroup_v1_and_controllerless_cgroup_v2 {
        use super::*;

        #[test]
        #[ignore = "needs cgroup v1 as root and a controller-less cgroup v2: scripts/test.sh runs it where the machine has that"]
        fn auto_prefers_v1_when_v2_lacks_the_memory_controller() {
            let env = environment();
            let v2 = env.v2().as_ref().expect("a writable cgroup v2 hierarchy");
            assert!(env.v1.is_ok(), "cgroup v1 as root");
            assert!(
                !v2.has_memory,
                "this cgroup v2 hierarchy has a memory controller"
            );
            let mut c = open(&Limits::new().memory(100 << 20)).unwrap();
            assert_eq!(c.containment().backend, Backend::CgroupV1);
            assert!(c.enforces_memory());
            c.close().unwrap();
            // Without a memory controller v2 ranks below v1 even when no limit needs a controller:
            // v1 measures the peak and lets a closure child join without a grace period.
            let mut c = open(&Limits::new()).unwrap();
            assert_eq!(c.containment().backend, Backend::CgroupV1);
            c.close().unwrap();
            let limits = Limits::new()
                .memory(100 << 20)
                .memory_kind(MemoryLimitKind::AddressSpace);
            let mut c = open(&limits).unwrap();
            assert_eq!(c.containment().backend, Backend::CgroupV1);
            assert!(!c.enforces_memory());
            c.close().unwrap();
        }
    }
}
