//! The one-way messages from the engine to the guard (postcard, one per `SOCK_SEQPACKET`
//! message, so concurrent senders never interleave).

use serde::{Deserialize, Serialize};

use crate::contain::Remains;

/// A message to the guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Message {
    /// A call is starting: kill `remains` if the caller dies before [`Message::Over`].
    Call { id: u64, remains: Remains },
    /// The call's process group, known once the child exists.
    Group { id: u64, pgid: i32 },
    /// The call is over: its processes are dead and reaped, its leaves removed.
    Over { id: u64 },
}

impl Message {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a guard message always serializes")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The first message the guard sends back: its pid (native-endian i32).
pub(crate) const HELLO_LEN: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let remains = Remains::cgroups(&["/sys/fs/cgroup/x/call-1-2".into()]);
        for message in [
            Message::Call { id: 7, remains },
            Message::Group { id: 7, pgid: 1234 },
            Message::Over { id: 7 },
        ] {
            assert_eq!(Message::decode(&message.encode()), Some(message));
        }
        assert_eq!(Message::decode(b"\xff\xff"), None);
    }
}
