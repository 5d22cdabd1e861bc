//! Per-connection delta state for `delta=vcdiff` (`ABLY-PROTOCOL.md` §7.2).

use shared::Message;

use crate::channel::StoredMessage;

/// The delta bases of one stream, per channel with deltas on.
#[derive(Debug, Default)]
pub(crate) struct Deltas {
    channels: Vec<String>,
}

impl Deltas {
    /// State for a stream with deltas on for `channels`.
    pub(crate) fn new(channels: &[String]) -> Self {
        Self {
            channels: channels.to_vec(),
        }
    }

    /// The delta form of `message` for this stream, or `None` to send it in
    /// full.
    pub(crate) fn next(&mut self, message: &StoredMessage) -> Option<Message> {
        let _ = (&self.channels, message);
        None
    }
}
