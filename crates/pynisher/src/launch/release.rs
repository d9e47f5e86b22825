//! The release record: what the supervisor writes on the release pipe to let the child run.
//!
//! A child blocks on its release pipe until it is in its container. The record it then reads
//! carries the call's rlimits, so that a child forked ahead of its call (`Limits::park_closure_bytes`)
//! gets the limits of the call it is finally given, not of the moment it was forked. A record is
//! shorter than `PIPE_BUF`, so it arrives whole.

/// The per-call rlimits the child sets once released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReleaseRecord {
    /// `RLIMIT_CPU` backstop (soft, hard) in seconds.
    pub(crate) rlimit_cpu: Option<(u64, u64)>,
    /// `RLIMIT_AS` in bytes.
    pub(crate) rlimit_as: Option<u64>,
}

/// Bytes of an encoded record: a flags word, then the CPU soft and hard limits and the
/// address-space limit, little-endian.
pub(crate) const RECORD_LEN: usize = 32;

const HAS_CPU: u64 = 1;
const HAS_AS: u64 = 2;

impl ReleaseRecord {
    /// The `RLIMIT_CPU` backstop of `limits`: it only bounds the damage if the supervisor
    /// stalls, so it must never fire before the supervisor's own, exact enforcement (RLIMIT_CPU
    /// is tick-sampled and per process).
    pub(crate) fn cpu_backstop(limits: &crate::Limits) -> Option<(u64, u64)> {
        limits.cpu_time.map(|cpu| {
            let soft = (cpu + limits.grace_period).as_secs() + 2;
            (soft, soft + 1)
        })
    }

    pub(crate) fn encode(&self) -> [u8; RECORD_LEN] {
        let (cpu_soft, cpu_hard) = self.rlimit_cpu.unwrap_or((0, 0));
        let flags = if self.rlimit_cpu.is_some() {
            HAS_CPU
        } else {
            0
        } | if self.rlimit_as.is_some() { HAS_AS } else { 0 };
        let mut out = [0u8; RECORD_LEN];
        for (i, word) in [flags, cpu_soft, cpu_hard, self.rlimit_as.unwrap_or(0)]
            .into_iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// Decodes a record; async-signal-safe (no allocation), as the child decodes it after the fork.
    pub(crate) fn decode(bytes: &[u8; RECORD_LEN]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let flags = word(0);
        ReleaseRecord {
            rlimit_cpu: (flags & HAS_CPU != 0).then(|| (word(1), word(2))),
            rlimit_as: (flags & HAS_AS != 0).then(|| word(3)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        for record in [
            ReleaseRecord::default(),
            ReleaseRecord {
                rlimit_cpu: Some((3, 4)),
                rlimit_as: None,
            },
            ReleaseRecord {
                rlimit_cpu: None,
                rlimit_as: Some(u64::MAX),
            },
            ReleaseRecord {
                rlimit_cpu: Some((0, u64::MAX)),
                rlimit_as: Some(1 << 30),
            },
        ] {
            assert_eq!(ReleaseRecord::decode(&record.encode()), record);
        }
    }
}
