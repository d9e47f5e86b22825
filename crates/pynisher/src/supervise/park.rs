//! A child forked ahead of its call: in its own fresh container, where it runs its `prepare`
//! step, then blocks on its release pipe before it runs anything of the call. Released later
//! with the call's limits (the per-call rlimits travel in the release record; the wall clock
//! starts at the release).

use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::process::Pid;

use super::start::{fork_call, Started};
use crate::launch::{ChildPlan, ReleaseRecord};
use crate::{Error, Limits, Weakness};

/// A parked child. Dropping it kills and reaps it and removes its container, like an unwaited
/// call (its release pipe closes too, so a child not yet killed exits on its own).
pub(crate) struct ParkedStart {
    /// Declared first: dropped (killed, reaped, cleaned up) before the release pipe closes.
    started: Started,
    release: OwnedFd,
    /// The record of the limits it was forked for; its `RLIMIT_AS` stays (it depends on the
    /// container and on the address space the child inherited at the fork).
    record: ReleaseRecord,
}

/// Forks a child for `plan` into a fresh container made for `limits`, and leaves it parked.
pub(crate) fn park(limits: &Limits, mut plan: ChildPlan<'_>) -> Result<ParkedStart, Error> {
    // The child tells a parked start by its prepare step (it then waits for two records).
    plan.prepare.get_or_insert_with(|| Box::new(|| {}));
    let (started, release) = fork_call(limits, plan, true)?;
    let (release, record) = release.expect("a parked start keeps its release pipe");
    Ok(ParkedStart {
        started,
        release,
        record,
    })
}

/// `limits` with the fields that a release sets per call taken from `template`: what remains
/// must be equal for a parked child to take the call.
fn without_per_call_fields(limits: &Limits, template: &Limits) -> Limits {
    Limits {
        wall_time: template.wall_time,
        cpu_time: template.cpu_time,
        grace_period: template.grace_period,
        wall_signal: template.wall_signal,
        cpu_signal: template.cpu_signal,
        result_limit: template.result_limit,
        drain_timeout: template.drain_timeout,
        memory_sample_interval: template.memory_sample_interval,
        ..limits.clone()
    }
}

impl ParkedStart {
    pub(crate) fn pid(&self) -> Pid {
        self.started.pid()
    }

    /// Whether this child can take a call under `limits`: everything that was fixed at its fork
    /// (the backend and its container's limits, the memory limit and how it is enforced, the
    /// process count, output capture) is as `limits` asks.
    pub(crate) fn fits(&self, limits: &Limits) -> bool {
        without_per_call_fields(limits, &self.started.limits) == self.started.limits
    }

    /// Lets the child run its call under `limits`: the release record carries the call's
    /// rlimits, the wall clock starts now. An error (limits it does not fit, a strict call that
    /// would be weakened, a failed write) drops it, which kills it and cleans up.
    pub(crate) fn release(self, limits: &Limits) -> Result<Started, Error> {
        limits.validate()?;
        if !self.fits(limits) {
            return Err(Error::invalid(
                "limits",
                format!("{limits:?}"),
                "differ from the parked child's in what was fixed at its fork (backend, memory, \
                 process count, output capture)",
            ));
        }
        let ParkedStart {
            mut started,
            release,
            record,
        } = self;
        let weaknesses = Weakness::of(
            limits,
            &started.container.containment().guarantees,
            started.memory_limit_kind,
        );
        if limits.strict && !weaknesses.is_empty() {
            return Err(Error::NotEnforceable {
                backend: started.container.containment().backend.name(),
                weaknesses,
            });
        }
        let record = ReleaseRecord {
            rlimit_cpu: ReleaseRecord::cpu_backstop(limits),
            ..record
        };
        rustix::io::write(&release, &record.encode())
            .map_err(|e| Error::sys("releasing the parked child", e))?;
        started.released_at = Instant::now();
        started.limits = limits.clone();
        started.weaknesses = weaknesses;
        Ok(started)
    }
}
