//! Client configuration with documented defaults.

use std::time::Duration;

use crate::codec::{CommandCode, MatchKey, StatusPolicy, DEFAULT_ADDITIONAL_DATA_LIMIT};
use crate::live::LiveConfig;
use crate::ReconnectPolicy;

/// How a [`Client`](crate::Client) connects and behaves. Every field has a
/// documented default; the builder methods consume and return the config.
///
/// ```
/// use flamingo_client::ClientConfig;
/// use std::time::Duration;
///
/// let cfg = ClientConfig::default()
///     .request_timeout(Duration::from_millis(500))
///     .event_queue_depth(64);
/// assert_eq!(cfg.request_timeout, Duration::from_millis(500));
/// assert_eq!(cfg.connect_timeout, Duration::from_secs(2));
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Time allowed for the TCP connection to open. Default 2 s.
    pub connect_timeout: Duration,
    /// Deadline used by calls that take no explicit timeout. Default 3 s.
    pub request_timeout: Duration,
    /// Largest `additionalDataBytes` accepted from, or sent to, the
    /// instrument. Default 64 MiB.
    pub additional_data_limit: u32,
    /// Queue depth of each event subscription; when full, the oldest event
    /// is dropped. Default 1024.
    pub event_queue_depth: usize,
    /// Recent events kept so a wait that starts late still sees an event
    /// that already arrived. Default 256.
    pub event_history: usize,
    /// Bytes of additional data the event history may keep in all; an
    /// event whose data does not fit is kept without it. Default 1 MiB.
    pub event_history_bytes: usize,
    /// How long a request whose caller gave up may stay unanswered before
    /// the link is reset to resynchronise (its reply key stays blocked
    /// meanwhile, so no later request of that key can receive its late
    /// reply). `Duration::MAX`: never reset. Default 10 s.
    pub late_reply_window: Duration,
    /// Requests left unanswered after their callers gave up, at most,
    /// before the link is reset at once. Default 64.
    pub max_unanswered: usize,
    /// Requests of one reply key allowed on the wire at once. Default 1,
    /// which makes every match exact. More pipelines same-code requests
    /// (matched first-in first-out, and by an echoed `int32Data0` where the
    /// catalogue says the reply carries one): faster, but if the
    /// instrument ever drops a reply, every later reply of that key goes to
    /// the wrong caller until the link is reset. Opt in only for an
    /// instrument known never to drop replies.
    pub max_in_flight_per_key: usize,
    /// How long the instrument may take nothing at all of a message that
    /// has begun on the wire before the link is reset (a partly written
    /// message cannot be taken back: its remaining bytes are written even
    /// after its caller's deadline, so no other call fails because a
    /// deadline cut it in two). Default 10 s.
    pub write_stall_timeout: Duration,
    /// Messages that may wait to be written at once (queued while the link
    /// is down or busy); beyond it a send or request fails at once with
    /// `TooLarge`. Default 4096.
    pub max_queued_messages: usize,
    /// Bytes (messages and their additional data) that may wait to be
    /// written at once. Default 256 MiB.
    pub max_queued_bytes: usize,
    /// Bytes of additional data an event subscription's queue may hold;
    /// beyond it the oldest events are dropped (and counted), as when the
    /// queue is full. Default 64 MiB.
    pub event_queue_bytes: usize,
    /// Whether the live image port (command port + 1) may be used. Default true.
    pub live: bool,
    /// Settings of the live image stream (frame size limit, queue depth...).
    pub live_config: LiveConfig,
    /// TCP keepalive (30 s idle, 10 s interval, 3 probes). Default on.
    pub keepalive: bool,
    /// Automatic reconnection after the link breaks. Default `None` (off).
    pub reconnect: Option<ReconnectPolicy>,
    /// Per-code status policies replacing the catalogue's defaults.
    pub status_overrides: Vec<(CommandCode, StatusPolicy)>,
    /// Per-code reply match keys replacing the catalogue's defaults.
    pub match_key_overrides: Vec<(CommandCode, MatchKey)>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            additional_data_limit: DEFAULT_ADDITIONAL_DATA_LIMIT,
            event_queue_depth: 1024,
            event_history: 256,
            event_history_bytes: 1024 * 1024,
            late_reply_window: Duration::from_secs(10),
            max_unanswered: 64,
            max_in_flight_per_key: 1,
            write_stall_timeout: Duration::from_secs(10),
            max_queued_messages: 4096,
            max_queued_bytes: 256 * 1024 * 1024,
            event_queue_bytes: 64 * 1024 * 1024,
            live: true,
            live_config: LiveConfig::default(),
            keepalive: true,
            reconnect: None,
            status_overrides: Vec::new(),
            match_key_overrides: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// Sets [`connect_timeout`](ClientConfig::connect_timeout).
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`request_timeout`](ClientConfig::request_timeout).
    #[must_use]
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Sets [`additional_data_limit`](ClientConfig::additional_data_limit).
    #[must_use]
    pub fn additional_data_limit(mut self, bytes: u32) -> Self {
        self.additional_data_limit = bytes;
        self
    }
    /// Sets [`event_queue_depth`](ClientConfig::event_queue_depth).
    #[must_use]
    pub fn event_queue_depth(mut self, n: usize) -> Self {
        self.event_queue_depth = n.max(1);
        self
    }
    /// Sets [`event_history`](ClientConfig::event_history).
    #[must_use]
    pub fn event_history(mut self, n: usize) -> Self {
        self.event_history = n;
        self
    }
    /// Sets [`late_reply_window`](ClientConfig::late_reply_window).
    #[must_use]
    pub fn late_reply_window(mut self, d: Duration) -> Self {
        self.late_reply_window = d;
        self
    }
    /// Sets [`max_in_flight_per_key`](ClientConfig::max_in_flight_per_key)
    /// (at least 1). Read its risk first.
    #[must_use]
    pub fn max_in_flight_per_key(mut self, n: usize) -> Self {
        self.max_in_flight_per_key = n.max(1);
        self
    }
    /// Sets [`max_unanswered`](ClientConfig::max_unanswered).
    #[must_use]
    pub fn max_unanswered(mut self, n: usize) -> Self {
        self.max_unanswered = n;
        self
    }
    /// Sets [`event_history_bytes`](ClientConfig::event_history_bytes).
    #[must_use]
    pub fn event_history_bytes(mut self, n: usize) -> Self {
        self.event_history_bytes = n;
        self
    }
    /// Sets [`write_stall_timeout`](ClientConfig::write_stall_timeout).
    #[must_use]
    pub fn write_stall_timeout(mut self, d: Duration) -> Self {
        self.write_stall_timeout = d;
        self
    }
    /// Sets [`max_queued_messages`](ClientConfig::max_queued_messages) (at least 1).
    #[must_use]
    pub fn max_queued_messages(mut self, n: usize) -> Self {
        self.max_queued_messages = n.max(1);
        self
    }
    /// Sets [`max_queued_bytes`](ClientConfig::max_queued_bytes).
    #[must_use]
    pub fn max_queued_bytes(mut self, n: usize) -> Self {
        self.max_queued_bytes = n;
        self
    }
    /// Sets [`event_queue_bytes`](ClientConfig::event_queue_bytes).
    #[must_use]
    pub fn event_queue_bytes(mut self, n: usize) -> Self {
        self.event_queue_bytes = n;
        self
    }
    /// Sets [`live`](ClientConfig::live).
    #[must_use]
    pub fn live(mut self, on: bool) -> Self {
        self.live = on;
        self
    }
    /// Sets [`live_config`](ClientConfig::live_config).
    #[must_use]
    pub fn live_config(mut self, config: LiveConfig) -> Self {
        self.live_config = config;
        self
    }
    /// Sets [`keepalive`](ClientConfig::keepalive).
    #[must_use]
    pub fn keepalive(mut self, on: bool) -> Self {
        self.keepalive = on;
        self
    }
    /// Enables automatic reconnection with `policy`.
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }
    /// Overrides the status policy of one code.
    #[must_use]
    pub fn status_policy(mut self, code: CommandCode, policy: StatusPolicy) -> Self {
        self.status_overrides.retain(|(c, _)| *c != code);
        self.status_overrides.push((code, policy));
        self
    }
    /// Overrides how replies to one code are matched.
    #[must_use]
    pub fn match_key(mut self, code: CommandCode, key: MatchKey) -> Self {
        self.match_key_overrides.retain(|(c, _)| *c != code);
        self.match_key_overrides.push((code, key));
        self
    }

    /// The status policy in force for `code`: an override, else the
    /// catalogue's, else [`StatusPolicy::CHECKED`] for unknown codes.
    pub fn policy_for(&self, code: CommandCode) -> StatusPolicy {
        self.status_overrides
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, p)| *p)
            .or_else(|| code.info().map(|i| i.status))
            .unwrap_or(StatusPolicy::CHECKED)
    }

    /// The match key in force for `code` (default [`MatchKey::Code`] for unknown codes).
    pub fn key_for(&self, code: CommandCode) -> MatchKey {
        self.match_key_overrides
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, k)| *k)
            .or_else(|| code.info().map(|i| i.match_key))
            .unwrap_or(MatchKey::Code)
    }
}
