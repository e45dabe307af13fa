//! Soak: 8 threads send 100,000 mixed requests (or
//! `FLAMINGO_SOAK_REQUESTS`) while the simulator injects random faults
//! (delays, late replies, garbage, fragmented writes, stalls, trickled data,
//! dropped links repaired by the client's reconnection policy); every
//! request ends with the right value or a typed error within its deadline +
//! 50 ms, no reply reaches the wrong caller, and threads and file
//! descriptors return to the baseline. Bounded to 55 s of requests. The scenario is examples/soak.rs, which runs it for
//! as long as you like. The only test in this binary (it counts threads and
//! file descriptors).

#[path = "../examples/soak.rs"]
#[allow(dead_code)]
mod soak;

#[test]
fn soak_mixed_requests_under_random_faults() {
    let requests = std::env::var("FLAMINGO_SOAK_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let opts = soak::Options {
        requests,
        seconds: Some(55.0),
        ..soak::Options::default()
    };
    let r = soak::run(&opts);
    eprintln!("soak: {}", r.summary());
    assert_eq!(r.misroutes, 0, "misrouted replies:\n{}", r.summary());
    assert_eq!(r.other_errors, 0, "untyped errors:\n{}", r.summary());
    assert_eq!(
        r.late_results,
        0,
        "results after deadline + 50 ms:\n{}",
        r.summary()
    );
    assert_eq!(r.counts_before, r.counts_after, "threads/fds leaked");
    assert_eq!(r.ok + r.timeouts + r.disconnected, r.requests);
    assert!(
        r.requests == requests || r.elapsed.as_secs() >= 55,
        "stopped early: {}",
        r.summary()
    );
    assert!(
        r.sim.faults_injected > 0 && r.client.reconnects > 0,
        "{}",
        r.summary()
    );
    assert!(r.passed());
}
