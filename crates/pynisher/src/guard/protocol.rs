//! The one-way messages from the engine to the guard (postcard, one per `SOCK_SEQPACKET`
//! message, so concurrent senders never interleave).

use serde::{Deserialize, Serialize};

use crate::contain::Remains;

/// A message to the guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Message {
    /// A call is starting: kill `remains` if the caller dies before [`Message::Over`].
    Call { id: u64, remains: Remains },
    /// The call's process group, sent by the call's child itself (see [`group_template`]).
    Group { id: u64, pgid: i32 },
    /// The call is over: its processes are dead and reaped, its leaves removed.
    Over { id: u64 },
    /// The call is over and its leaves are empty: the guard removes them (retrying while the
    /// last process's teardown keeps one busy), off the caller's CPU.
    Remove { id: u64 },
    /// The caller is exiting: the guard finishes every removal asked before (waiting, bounded,
    /// for busy leaves), then answers [`FLUSHED`]: the one message the caller waits for.
    Flush,
}

impl Message {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a guard message always serializes")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
        if bytes.len() == GROUP_MESSAGE_LEN && bytes[0] == GROUP_TAG {
            return Some(Message::Group {
                id: u64::from_le_bytes(bytes[1..9].try_into().ok()?),
                pgid: i32::from_le_bytes(bytes[9..13].try_into().ok()?),
            });
        }
        postcard::from_bytes(bytes).ok()
    }
}

/// The tag of the fixed-size group message a call's child sends itself (postcard messages start
/// with their variant index, 0 to 4).
const GROUP_TAG: u8 = b'G';

/// Size of the group message: tag, call id (u64 LE), process group (i32 LE).
pub(crate) const GROUP_MESSAGE_LEN: usize = 13;

/// The group message of call `id` with the group left 0 (the child fills it in).
pub(crate) fn group_template(id: u64) -> [u8; GROUP_MESSAGE_LEN] {
    let mut m = [0u8; GROUP_MESSAGE_LEN];
    m[0] = GROUP_TAG;
    m[1..9].copy_from_slice(&id.to_le_bytes());
    m
}

/// The first message the guard sends back: its pid (native-endian i32).
pub(crate) const HELLO_LEN: usize = 4;

/// The guard's answer to [`Message::Flush`] (one byte: never a hello).
pub(crate) const FLUSHED: &[u8] = b"F";

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
            Message::Remove { id: 8 },
            Message::Flush,
        ] {
            assert_eq!(Message::decode(&message.encode()), Some(message));
        }
        assert_eq!(Message::decode(b"\xff\xff"), None);
        let mut group = group_template(7);
        group[9..].copy_from_slice(&1234i32.to_le_bytes());
        assert_eq!(
            Message::decode(&group),
            Some(Message::Group { id: 7, pgid: 1234 })
        );
    }
}
