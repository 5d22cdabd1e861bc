//! What the mock has done: `GET /_mock/stats` and [`MockAbly::stats`](crate::MockAbly::stats).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counters for the whole mock, as `GET /_mock/stats` returns them:
/// `{"openStreams":N,"openConnections":N,"attachedChannels":N,"published":N,"delivered":N,"channels":{"name":{…}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Stats {
    /// SSE and plain streams open right now.
    pub open_streams: u64,
    /// Realtime WebSocket connections open right now (past the upgrade,
    /// before the socket closes).
    pub open_connections: u64,
    /// Channels attached on open realtime connections, counted once per
    /// connection and channel.
    pub attached_channels: u64,
    /// Messages stored since start (idempotent duplicates not counted).
    pub published: u64,
    /// Message events written to streams and realtime connections since
    /// start (replays included).
    pub delivered: u64,
    /// Channels that have subscribers or retained messages, by name.
    pub channels: BTreeMap<String, ChannelStats>,
}

/// Counters for one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ChannelStats {
    /// Messages stored on the channel since it was created.
    pub published: u64,
    /// Message events for this channel written to streams.
    pub delivered: u64,
    /// Messages retained for history, resume and rewind.
    pub retained: u64,
    /// Streams attached to the channel, and realtime connections attached
    /// to it with the subscribe mode.
    pub subscribers: u64,
    /// Presence members on the channel now.
    #[serde(default)]
    pub presence_members: u64,
    /// Realtime connections attached to the channel with the presence
    /// subscribe mode.
    #[serde(default)]
    pub presence_subscribers: u64,
}
