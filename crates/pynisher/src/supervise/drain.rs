//! Bounded capture of stdout and stderr.
