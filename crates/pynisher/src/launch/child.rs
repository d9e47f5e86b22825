//! What runs in the child between fork and exec (or the closure). Stub; being written.
use crate::{Command, Error, Limits};

pub(crate) enum Payload<'f> {
    Exec(Command),
    ExecWithResult(Command),
    Closure(Box<dyn FnOnce() -> Result<Vec<u8>, String> + 'f>),
}

pub(crate) struct ChildPlan<'f> {
    pub(crate) payload: Payload<'f>,
}

impl<'f> ChildPlan<'f> {
    pub(crate) fn new(_limits: &Limits, payload: Payload<'f>) -> Result<Self, Error> {
        Ok(ChildPlan { payload })
    }
}
