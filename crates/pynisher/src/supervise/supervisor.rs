//! The supervisor loop. Stub; being written.
use crate::launch::ChildPlan;
use crate::{Error, Limits, Observer, Outcome};

pub(crate) struct Started {
    pid: i32,
}

impl Started {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }
    pub(crate) fn abandon(self) {}
}

pub(crate) fn start(_limits: &Limits, _plan: ChildPlan<'_>) -> Result<Started, Error> {
    todo!()
}

pub(crate) fn supervise(_started: Started, _observer: &mut dyn Observer) -> Result<Outcome<Vec<u8>>, Error> {
    todo!()
}
