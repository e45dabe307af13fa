//! The live stream reconnects with the `ReconnectPolicy` of its config: the
//! policy's attempt limit ends the stream with a typed error.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use flamingo_client::live::{LiveConfig, LiveStream};
use flamingo_client::ReconnectPolicy;

#[test]
fn policy_attempt_limit_ends_the_stream() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .jitter(0.0)
        .max_attempts(Some(3));
    let config = LiveConfig::default()
        .with_reconnect_policy(policy.clone())
        .with_reconnect_timeout(Duration::from_secs(60));
    assert_eq!(config.reconnect_policy, policy);
    let live = LiveStream::connect(addr, config, Instant::now() + Duration::from_secs(5)).unwrap();
    let (server, _) = listener.accept().unwrap();
    // Nothing listens any more, so every reconnection is refused; then the
    // link is lost.
    drop(listener);
    drop(server);

    let err = live.next_frame(Duration::from_secs(20)).unwrap_err();
    assert!(err.is_disconnected(), "{err:?}");
    // One immediate attempt, then the policy's three.
    assert!(
        err.to_string().contains("4 reconnection attempts failed"),
        "{err}"
    );
    let stats = live.stats();
    assert_eq!(stats.disconnects, 1);
    assert_eq!(stats.reconnects, 0);
    assert!(!live.is_connected());
    live.close();
}

#[test]
fn default_policy_is_short_and_bounded_by_the_timeout() {
    let p = LiveConfig::default().reconnect_policy;
    assert_eq!(p.initial_delay, Duration::from_millis(20));
    assert_eq!(p.max_delay, Duration::from_secs(1));
    assert_eq!(p.max_attempts, None);
}
