//! Schedule exploration of the real connection core (RELIABILITY.md,
//! "Schedule exploration").
//!
//! Built only with `RUSTFLAGS="--cfg flamingo_explore"`, where the core's
//! locks, condition variables, threads and clock are shuttle's (see
//! `client::sync`). Each test runs one scenario (callers, an instrument
//! that tags every reply with its caller's tag, disruptions) on many
//! schedules chosen by shuttle's random and PCT schedulers, and checks on
//! every schedule:
//!
//! - no caller gets another's reply (code and tag match);
//! - every call returns by its deadline, and a reply's caller returns at
//!   the (virtual) instant its reply arrived, not after other work;
//! - a call times out only if the scenario lets its reply be late or
//!   lost (otherwise a timeout is a lost reply or a wedged key);
//! - `Disconnected` only when a link ended or `close()` ran during the
//!   call, and the client never resets a healthy link;
//! - after the scenario a fresh request succeeds (no wedged link);
//! - `close()` returns with every client thread ended, without waiting
//!   for time to pass, and every thread ends.
//!
//! `FLAMINGO_EXPLORE_SCHEDULES` sets the schedules per scheduler and
//! scenario (default 1000), `FLAMINGO_EXPLORE_SCHEDULER` runs only `random`
//! or only `pct`, `FLAMINGO_EXPLORE_SEED` sets the seed (default fixed, so
//! CI explores the same schedules every run), and
//! `FLAMINGO_EXPLORE_REPLAY` replays one failing schedule string printed
//! by shuttle (run one test with it).

mod harness;
mod instrument;
mod link;

use std::sync::Arc;
use std::time::Duration;

use harness::{Call, How, Scenario};
use instrument::Behaviour;

use crate::client::sync::shuttled;
use crate::codec::CommandCode;
use crate::{ClientConfig, ReconnectPolicy};

const A: CommandCode = CommandCode::CAMERA_EXPOSURE_GET;
const B: CommandCode = CommandCode::FILTER_POSITION_GET;
const PLAIN: CommandCode = CommandCode::LASER_ALL_DISABLE;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Runs `sc` on the random and the PCT scheduler.
fn explore(name: &str, sc: Scenario) {
    let sc = Arc::new(sc);
    let f = {
        let sc = sc.clone();
        move || harness::run(&sc)
    };
    let mut config = shuttle::Config::new();
    config.stack_size = 1 << 18;
    config.max_steps = shuttle::MaxSteps::FailAfter(1_000_000);
    if let Ok(s) = std::env::var("FLAMINGO_EXPLORE_REPLAY") {
        // Shuttle prints the string over several lines.
        let s: String = s.split_whitespace().collect();
        let sched = shuttle::scheduler::ReplayScheduler::new_from_encoded(&s);
        shuttle::Runner::new(sched, config).run(f);
        return;
    }
    let n = env_num("FLAMINGO_EXPLORE_SCHEDULES", 1000) as usize;
    let seed = env_num("FLAMINGO_EXPLORE_SEED", 0x00f1_a519_0000);
    let which = std::env::var("FLAMINGO_EXPLORE_SCHEDULER").unwrap_or_default();
    if which != "pct" {
        eprintln!("{name}: random scheduler, {n} schedules, seed {seed}");
        shuttled::reset_runs();
        let random = shuttle::scheduler::RandomScheduler::new_from_seed(seed, n);
        shuttle::Runner::new(random, config.clone()).run(f.clone());
    }
    if which != "random" {
        eprintln!("{name}: PCT scheduler (depth 3), {n} schedules, seed {seed}");
        shuttled::reset_runs();
        let pct = shuttle::scheduler::PctScheduler::new_from_seed(seed, 3, n);
        shuttle::Runner::new(pct, config).run(f);
    }
    eprintln!("{name}: {:?}", harness::take_tally());
}

fn reconnecting() -> ClientConfig {
    ClientConfig {
        reconnect: Some(ReconnectPolicy::default().initial_delay(Duration::ZERO)),
        ..ClientConfig::default()
    }
}

/// Blocking and submitted requests, same and different codes, a plain send
/// and a small payload, on a healthy link: every call gets its own reply.
#[test]
fn healthy_link_every_caller_gets_its_own_reply() {
    explore(
        "healthy_link_every_caller_gets_its_own_reply",
        Scenario {
            callers: vec![
                vec![
                    Call::request(1, A, 1000),
                    Call::request(2, B, 1000).how(How::Submit),
                ],
                vec![
                    Call::request(3, A, 1000),
                    Call::request(4, PLAIN, 1000).how(How::Send),
                ],
                vec![
                    Call::request(5, A, 1000).how(How::Submit),
                    Call::request(6, B, 1000).data(300),
                ],
            ],
            ..Scenario::default()
        },
    );
}

/// A reply that is an error (additional data over the limit) frees its key
/// like any other: the next request of that key is written at once.
#[test]
fn an_error_reply_hands_the_key_on() {
    explore(
        "an_error_reply_hands_the_key_on",
        Scenario {
            config: ClientConfig {
                additional_data_limit: 64,
                ..ClientConfig::default()
            },
            behaviour: Behaviour {
                oversized: vec![(1, 200), (3, 200)],
                ..Behaviour::default()
            },
            callers: vec![
                vec![Call::request(1, A, 1000), Call::request(2, A, 1000)],
                vec![Call::request(3, A, 1000).how(How::Submit)],
                vec![Call::request(4, A, 1000)],
            ],
            ..Scenario::default()
        },
    );
}

/// The reply arrives at the very instant its caller's deadline passes: the
/// caller gets it or a Timeout (never Disconnected), and the key is handed
/// on either way.
#[test]
fn a_reply_at_the_deadline_is_delivered_or_times_out() {
    explore(
        "a_reply_at_the_deadline_is_delivered_or_times_out",
        Scenario {
            behaviour: Behaviour {
                answer_at: vec![
                    (1, Duration::from_millis(100)),
                    (3, Duration::from_millis(200)),
                ],
                ..Behaviour::default()
            },
            callers: vec![
                vec![Call::request(1, A, 100)],
                vec![Call::request(2, A, 1000)],
                vec![Call::request(3, B, 200).how(How::Submit)],
                vec![Call::request(4, B, 1000)],
            ],
            may_time_out: vec![1, 3],
            ..Scenario::default()
        },
    );
}

/// A large payload (long deadline) and a small request (short deadline) to
/// a slow reader: nobody writes another's payload under their own deadline,
/// so the payload is never cut off, and the small caller returns as soon
/// as its reply is in.
#[test]
fn a_payload_is_never_written_under_another_callers_deadline() {
    explore(
        "a_payload_is_never_written_under_another_callers_deadline",
        Scenario {
            behaviour: Behaviour {
                read_delay: Some(Duration::from_millis(1)),
                read_max: 512,
                ..Behaviour::default()
            },
            callers: vec![
                vec![Call::request(1, A, 20)],
                vec![Call::request(2, B, 10_000).data(16 * 1024)],
                vec![Call::request(3, A, 10_000).how(How::Submit)],
            ],
            may_time_out: vec![1],
            ..Scenario::default()
        },
    );
}

/// The link is lost at a point the schedule chooses and the client
/// reconnects at once: only calls on the lost link fail (Disconnected),
/// nothing that happened on the old link changes the new one, and the new
/// link works.
#[test]
fn a_lost_link_and_a_reconnect_mid_flight() {
    explore(
        "a_lost_link_and_a_reconnect_mid_flight",
        Scenario {
            config: reconnecting(),
            callers: vec![
                vec![Call::request(1, A, 1000), Call::request(2, B, 1000)],
                vec![
                    Call::request(3, B, 1000).how(How::Submit),
                    Call::request(4, PLAIN, 1000).how(How::Send),
                ],
                vec![
                    Call::request(5, A, 1000).data(600),
                    Call::request(6, A, 1000),
                ],
            ],
            cut: true,
            ..Scenario::default()
        },
    );
}

/// Requests of codes the instrument also broadcasts (laser level, checked
/// by its laser index; LED preview off, by code alone), while it broadcasts
/// laser 2's and laser 3's level and the LED at points the schedule
/// chooses: no request gets a broadcast sent before it began, another
/// laser's broadcast, or another's reply.
#[test]
fn a_broadcast_of_a_requested_code_is_never_a_stale_reply() {
    let laser = |tag| Call::request(tag, CommandCode::LASER_LEVEL_GET, 1000).int0(2);
    let led = |tag| Call::request(tag, CommandCode::LED_PREVIEW_DISABLE, 1000);
    explore(
        "a_broadcast_of_a_requested_code_is_never_a_stale_reply",
        Scenario {
            callers: vec![
                vec![laser(1), laser(2)],
                vec![laser(3).how(How::Submit), led(4)],
                vec![led(5), Call::request(6, A, 1000)],
            ],
            broadcasts: vec![
                (CommandCode::LASER_LEVEL_GET, 2),
                (CommandCode::LASER_LEVEL_GET, 3),
                (CommandCode::LED_PREVIEW_DISABLE, 0),
            ],
            ..Scenario::default()
        },
    );
}

/// Sends that ask for an answer (TRIGGER_CALL_BACK) and requests that are
/// abandoned at once, among requests of the same codes: the answers and
/// the late replies are never taken for a request's reply, and every key
/// is handed on.
#[test]
fn flagged_sends_and_abandoned_requests_never_answer_a_request() {
    explore(
        "flagged_sends_and_abandoned_requests_never_answer_a_request",
        Scenario {
            callers: vec![
                vec![
                    Call::request(1, A, 1000).how(How::FlaggedSend),
                    Call::request(2, A, 1000),
                ],
                vec![
                    Call::request(3, A, 1000).how(How::Submit),
                    Call::request(4, A, 1000).how(How::FlaggedSend),
                ],
                vec![
                    Call::request(5, B, 1000).how(How::Abandon),
                    Call::request(6, B, 1000),
                ],
            ],
            ..Scenario::default()
        },
    );
}

/// Time moves on at points the schedule chooses while threads could still
/// run (as if descheduled): short deadlines expire anywhere (queued, mid
/// write, waiting for the reply), a reply comes late, a request is
/// abandoned, writes may time out part-way and the link may be reset and
/// re-made. Whatever happens, no caller gets another's reply, every
/// Disconnected follows a link end, and a fresh request works afterwards.
#[test]
fn deadlines_passing_anywhere_never_misroute() {
    explore(
        "deadlines_passing_anywhere_never_misroute",
        Scenario {
            config: ClientConfig {
                late_reply_window: Duration::from_millis(200),
                ..reconnecting()
            },
            behaviour: Behaviour {
                answer_at: vec![(2, Duration::from_millis(150))],
                ..Behaviour::default()
            },
            callers: vec![
                vec![Call::request(1, A, 50), Call::request(2, A, 100)],
                vec![
                    Call::request(3, A, 1000).how(How::Abandon),
                    Call::request(4, B, 80),
                ],
                vec![
                    Call::request(5, B, 60).how(How::Submit).data(700),
                    Call::request(6, A, 1000).how(How::FlaggedSend),
                ],
                vec![Call::request(7, A, 300)],
            ],
            jumps: 3,
            max_links: 8,
            ..Scenario::default()
        },
    );
}

/// The lost-link scenario on a link without writes that never wait (as on
/// Windows): the sender thread writes everything.
#[test]
fn a_lost_link_without_non_blocking_writes() {
    explore(
        "a_lost_link_without_non_blocking_writes",
        Scenario {
            config: reconnecting(),
            callers: vec![
                vec![Call::request(1, A, 1000), Call::request(2, B, 1000)],
                vec![
                    Call::request(3, B, 1000).how(How::Submit),
                    Call::request(4, PLAIN, 1000).how(How::Send),
                ],
                vec![Call::request(5, A, 1000).data(600)],
            ],
            cut: true,
            try_write: false,
            ..Scenario::default()
        },
    );
}

/// A reply the instrument never sends: its caller times out, the key stays
/// closed until the late-reply window resets the link, and then everything
/// works again.
#[test]
fn a_dropped_reply_blocks_its_key_until_the_reset() {
    explore(
        "a_dropped_reply_blocks_its_key_until_the_reset",
        Scenario {
            config: ClientConfig {
                late_reply_window: Duration::from_millis(300),
                ..ClientConfig::default()
            },
            behaviour: Behaviour {
                drop: vec![1],
                ..Behaviour::default()
            },
            callers: vec![
                vec![Call::request(1, A, 100), Call::request(2, B, 1000)],
                vec![Call::request(3, A, 1000).how(How::Submit)],
            ],
            may_time_out: vec![1, 3],
            resync_ok: true,
            ..Scenario::default()
        },
    );
}

/// Two threads close the client while calls are in flight: each close()
/// returns only when every client thread has ended.
#[test]
fn concurrent_closes_both_wait_for_the_teardown() {
    explore(
        "concurrent_closes_both_wait_for_the_teardown",
        Scenario {
            callers: vec![
                vec![Call::request(1, A, 1000), Call::request(2, B, 1000)],
                vec![Call::request(3, A, 1000).how(How::Submit)],
            ],
            closers: 2,
            probe: false,
            ..Scenario::default()
        },
    );
}

/// Everything at once: a lost link, a dropped reply, a reply at its
/// caller's deadline, a broadcast, a flagged send, an abandoned request and
/// a payload.
#[test]
fn everything_at_once() {
    let laser = |tag| Call::request(tag, CommandCode::LASER_LEVEL_GET, 1000).int0(2);
    explore(
        "everything_at_once",
        Scenario {
            config: ClientConfig {
                late_reply_window: Duration::from_millis(300),
                ..reconnecting()
            },
            behaviour: Behaviour {
                drop: vec![3],
                answer_at: vec![(5, Duration::from_millis(100))],
                ..Behaviour::default()
            },
            callers: vec![
                vec![laser(1), Call::request(2, A, 1000).data(600)],
                vec![Call::request(3, B, 100), Call::request(4, B, 1000)],
                vec![
                    Call::request(5, A, 100),
                    Call::request(6, A, 1000).how(How::FlaggedSend),
                ],
                vec![
                    Call::request(7, B, 1000).how(How::Abandon),
                    laser(8).how(How::Submit),
                ],
            ],
            may_time_out: vec![3, 5],
            resync_ok: true,
            cut: true,
            broadcasts: vec![(CommandCode::LASER_LEVEL_GET, 2)],
            max_links: 6,
            ..Scenario::default()
        },
    );
}

/// The same with deadlines passing anywhere and a `close()` at a point
/// the schedule chooses.
#[test]
fn everything_at_once_with_time_jumps_and_a_close() {
    let laser = |tag| Call::request(tag, CommandCode::LASER_LEVEL_GET, 1000).int0(2);
    explore(
        "everything_at_once_with_time_jumps_and_a_close",
        Scenario {
            config: ClientConfig {
                late_reply_window: Duration::from_millis(300),
                ..reconnecting()
            },
            behaviour: Behaviour {
                drop: vec![3],
                answer_at: vec![(5, Duration::from_millis(100))],
                ..Behaviour::default()
            },
            callers: vec![
                vec![laser(1), Call::request(2, A, 1000).data(600)],
                vec![Call::request(3, B, 100), Call::request(4, B, 1000)],
                vec![
                    Call::request(5, A, 100),
                    Call::request(6, A, 1000).how(How::FlaggedSend),
                ],
                vec![
                    Call::request(7, B, 1000).how(How::Abandon),
                    laser(8).how(How::Submit),
                ],
            ],
            cut: true,
            broadcasts: vec![(CommandCode::LASER_LEVEL_GET, 2)],
            jumps: 3,
            closers: 1,
            probe: false,
            max_links: 8,
            ..Scenario::default()
        },
    );
}

/// Pipelining (`max_in_flight_per_key = 2`, keys split by axis): requests
/// of one key share the wire and are matched in order.
#[test]
fn pipelined_requests_of_one_key_are_matched_in_order() {
    let pos = |tag, axis| Call::request(tag, CommandCode::STAGE_POSITION_GET, 1000).int0(axis);
    explore(
        "pipelined_requests_of_one_key_are_matched_in_order",
        Scenario {
            config: ClientConfig {
                max_in_flight_per_key: 2,
                ..ClientConfig::default()
            },
            callers: vec![
                vec![pos(1, 1), pos(2, 2)],
                vec![pos(3, 1).how(How::Submit), pos(4, 1)],
                vec![pos(5, 1), pos(6, 2).how(How::Submit)],
            ],
            ..Scenario::default()
        },
    );
}

/// Once `state()` reads `Closed` (the link was lost without a reconnect
/// policy, or `close()` ran), `stats().teardowns` is 1. Found by the
/// explorer after `io::write_to_a_slow_reader_fails_at_the_overall_deadline`
/// failed once in a full run of `--test client` (`left: 0, right: 1`): both
/// `thread::link_ended` and `Shared::shut` set the phase to `Closed` under
/// the lock but count the teardown only after it, so a thread that polls
/// `is_connected()` and then reads the stats can see 0.
#[test]
fn the_teardown_is_counted_when_the_client_reports_closed() {
    explore(
        "the_teardown_is_counted_when_the_client_reports_closed",
        Scenario {
            callers: vec![vec![Call::request(1, A, 1000)]],
            cut: true,
            closers: 1,
            watch_teardown: true,
            probe: false,
            ..Scenario::default()
        },
    );
}

/// The reader's batch window: unsolicited messages of a code nobody asks
/// for arrive among replies, so the reader is often routing a read (and
/// callers queue for it) when requests of one key free each other, plain
/// sends complete and deadlines pass; a waker runs on every thread
/// (yielding to any other). Every call still gets its own reply in time,
/// and nothing queued is left without a writer.
#[test]
fn the_readers_batch_with_events_sends_and_a_waker() {
    const EV: CommandCode = CommandCode::SYSTEM_STATE_IDLE;
    explore(
        "the_readers_batch_with_events_sends_and_a_waker",
        Scenario {
            callers: vec![
                vec![
                    Call::request(1, A, 1000),
                    Call::request(2, A, 1000).how(How::Submit),
                    Call::request(3, PLAIN, 1000).how(How::Send),
                ],
                vec![
                    Call::request(4, A, 1000).how(How::Submit),
                    Call::request(5, PLAIN, 1000).how(How::Send).data(700),
                    Call::request(6, A, 1000),
                ],
                vec![
                    Call::request(7, B, 1000),
                    Call::request(8, A, 1000).how(How::FlaggedSend),
                    Call::request(9, B, 1000).how(How::Submit),
                ],
            ],
            broadcasts: vec![(EV, 0), (EV, 1), (EV, 2), (EV, 3)],
            waker: true,
            ..Scenario::default()
        },
    );
}

/// The same with a lost link, deadlines passing anywhere and a `close()`.
#[test]
fn the_readers_batch_with_a_lost_link_time_jumps_and_a_close() {
    const EV: CommandCode = CommandCode::SYSTEM_STATE_IDLE;
    explore(
        "the_readers_batch_with_a_lost_link_time_jumps_and_a_close",
        Scenario {
            config: reconnecting(),
            callers: vec![
                vec![
                    Call::request(1, A, 1000),
                    Call::request(2, A, 1000).how(How::Submit),
                    Call::request(3, PLAIN, 1000).how(How::Send),
                ],
                vec![
                    Call::request(4, A, 1000).how(How::Submit),
                    Call::request(5, PLAIN, 1000).how(How::Send).data(700),
                ],
                vec![
                    Call::request(7, B, 1000),
                    Call::request(8, A, 1000).how(How::FlaggedSend),
                ],
            ],
            broadcasts: vec![(EV, 0), (EV, 1), (EV, 2)],
            waker: true,
            cut: true,
            jumps: 2,
            closers: 1,
            probe: false,
            max_links: 8,
            ..Scenario::default()
        },
    );
}
