//! What a call asked for that its backend enforces less strongly: [`Weakness`]. Every outcome
//! lists them ([`crate::Outcome::weaknesses`]); the faces say them aloud, and
//! [`crate::Limits::strict`] refuses to start a call that has any.

use serde::{Deserialize, Serialize};

use crate::{Guarantees, Limits, MemoryLimitKind};

/// One way in which a call is enforced less strongly than a cgroup with every controller would.
///
/// Only what matters to the call is listed: [`Weakness::ProcessLimitPolled`] only when a process
/// limit was asked for, the memory ones only with a memory limit.
///
/// ```
/// let w = pynisher::Weakness::MemorySampled;
/// assert_eq!(w.name(), "memory_sampled");
/// assert!(w.describe().contains("sampling"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Weakness {
    /// No cgroup: a descendant that leaves the process group (`setsid`) and is orphaned is not
    /// seen — not killed at the end or at a limit, its CPU time and memory not counted.
    EscapeesNotContained,
    /// The memory limit is enforced by sampling the resident memory of the call's processes: a
    /// spike shorter than the sampling interval can pass, and the kill comes up to one interval
    /// late (see [`Limits::memory_sample_interval`]).
    MemorySampled,
    /// The memory limit fell back to `RLIMIT_AS` on each process (address space, not memory in
    /// use): an allocation fails instead of a kill, and processes are not summed.
    MemoryAddressSpace,
    /// The process limit is checked by polling, not refused by the kernel at fork time: a fork
    /// burst can exceed it between two polls.
    ProcessLimitPolled,
}

impl Weakness {
    /// A stable lower-case name used in reports (`escapees_not_contained`, `memory_sampled`,
    /// `memory_address_space`, `process_limit_polled`).
    pub fn name(self) -> &'static str {
        match self {
            Weakness::EscapeesNotContained => "escapees_not_contained",
            Weakness::MemorySampled => "memory_sampled",
            Weakness::MemoryAddressSpace => "memory_address_space",
            Weakness::ProcessLimitPolled => "process_limit_polled",
        }
    }

    /// One short lower-case sentence saying what is weaker.
    pub fn describe(self) -> &'static str {
        match self {
            Weakness::EscapeesNotContained => {
                "no cgroup: a descendant that calls setsid and is orphaned escapes (not killed, not counted)"
            }
            Weakness::MemorySampled => {
                "the memory limit is enforced by sampling resident memory, so a short spike can pass it"
            }
            Weakness::MemoryAddressSpace => {
                "the memory limit is an address-space limit per process (RLIMIT_AS), not memory in use"
            }
            Weakness::ProcessLimitPolled => {
                "the process limit is checked by polling, so a fork burst can exceed it briefly"
            }
        }
    }

    /// The weaknesses of a call with `limits`, held by a backend with `guarantees`, whose memory
    /// limit (if any) ended up counting `applied`.
    pub(crate) fn of(
        limits: &Limits,
        guarantees: &Guarantees,
        applied: Option<MemoryLimitKind>,
    ) -> Vec<Weakness> {
        let mut out = Vec::new();
        if !guarantees.all_descendants_contained {
            out.push(Weakness::EscapeesNotContained);
        }
        match applied {
            Some(MemoryLimitKind::Sampled) => out.push(Weakness::MemorySampled),
            // Asked for explicitly, the address-space limit is what the caller wanted.
            Some(MemoryLimitKind::AddressSpace)
                if limits.memory_kind != MemoryLimitKind::AddressSpace =>
            {
                out.push(Weakness::MemoryAddressSpace)
            }
            _ => {}
        }
        if limits.max_processes.is_some() && !guarantees.kernel_process_limit {
            out.push(Weakness::ProcessLimitPolled);
        }
        out
    }
}

impl std::fmt::Display for Weakness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak() -> Guarantees {
        Guarantees {
            all_descendants_contained: false,
            exact_tree_cpu_time: false,
            tree_memory_limit: false,
            kernel_process_limit: false,
            notes: Vec::new(),
        }
    }

    #[test]
    fn only_what_the_call_asked_for_is_listed() {
        let none = Weakness::of(&Limits::new(), &weak(), None);
        assert_eq!(none, vec![Weakness::EscapeesNotContained]);
        let limits = Limits::new().memory(1 << 20).max_processes(4);
        let all = Weakness::of(&limits, &weak(), Some(MemoryLimitKind::Sampled));
        assert_eq!(
            all,
            vec![
                Weakness::EscapeesNotContained,
                Weakness::MemorySampled,
                Weakness::ProcessLimitPolled
            ]
        );
    }

    #[test]
    fn an_address_space_limit_asked_for_is_not_a_weakness() {
        let strong = Guarantees {
            all_descendants_contained: true,
            kernel_process_limit: true,
            ..weak()
        };
        let auto = Limits::new().memory(1 << 20);
        assert_eq!(
            Weakness::of(&auto, &strong, Some(MemoryLimitKind::AddressSpace)),
            vec![Weakness::MemoryAddressSpace]
        );
        let asked = auto.memory_kind(MemoryLimitKind::AddressSpace);
        assert!(Weakness::of(&asked, &strong, Some(MemoryLimitKind::AddressSpace)).is_empty());
    }
}
