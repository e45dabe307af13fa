//! Concurrent snapshots: each `snapshot()` returns the frame that answers
//! its own trigger, never another caller's.
//!
//! The instrument here numbers the triggers it receives (1, 2, ...) and
//! answers trigger k with frame number k. It acknowledges a trigger at once
//! and sends its frame when the next trigger arrives or after
//! `FRAME_AFTER`, whichever comes first: the case where two snapshots'
//! frames arrive together, which is when a caller could take the other's.

use std::io::Write;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use flamingo_client::codec::{CommandCode as C, LiveHeader, Message};
use flamingo_client::{Client, ClientConfig};

use crate::common::{Conn, Next, TestServer, LONG};

/// How long the instrument holds a frame back when no other trigger comes.
const FRAME_AFTER: Duration = Duration::from_millis(300);

fn frame(k: u32) -> Vec<u8> {
    let (w, h) = (4u32, 2u32);
    let header = LiveHeader {
        image_size: w * h * 2,
        width: w,
        height: h,
        scale_min: 0,
        scale_max: 100,
        timestamp_ms: k,
        frame_number: k,
        exposure_us: 1,
        reserved: [0, 0],
    };
    let mut out = header.to_bytes().to_vec();
    out.resize(out.len() + (w * h * 2) as usize, k as u8);
    out
}

/// The live port: sends frame k when trigger k + 1 arrives, or after
/// `FRAME_AFTER`; never the frames `lost` names.
fn live_port(listener: TcpListener, triggers: Receiver<u32>, lost: fn(u32) -> bool) {
    let send = |conn: &mut std::net::TcpStream, k: u32| {
        if !lost(k) {
            let _ = conn.write_all(&frame(k));
        }
    };
    let Ok((mut conn, _)) = listener.accept() else {
        return;
    };
    let mut pending: Option<(u32, Instant)> = None;
    loop {
        let got = match pending {
            Some((_, due)) => triggers.recv_deadline(due),
            None => triggers.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(k) => {
                if let Some((held, _)) = pending.take() {
                    send(&mut conn, held);
                }
                pending = Some((k, Instant::now() + FRAME_AFTER));
            }
            Err(RecvTimeoutError::Timeout) => {
                let (held, _) = pending.take().unwrap();
                send(&mut conn, held);
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The instrument: (its command server, the triggers it received, for the test).
fn instrument(lost: fn(u32) -> bool) -> (TestServer, Receiver<u32>, thread::JoinHandle<()>) {
    // A command port P with the live port on P + 1.
    let (command, live) = loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(live) = TcpListener::bind(("127.0.0.1", port + 1)) {
            break (l, live);
        }
    };
    let addr = command.local_addr().unwrap().to_string();
    drop(command);
    let (to_live, live_triggers) = unbounded();
    let (to_test, seen) = unbounded();
    let live = thread::spawn(move || live_port(live, live_triggers, lost));
    let server = TestServer::start_on(&addr, move || {
        let (to_live, to_test): (Sender<u32>, Sender<u32>) = (to_live.clone(), to_test.clone());
        let mut n = 0;
        move |m: Message, _d: Vec<u8>, c: &mut Conn| {
            if m.code == C::CAMERA_SNAPSHOT_GET {
                n += 1;
                c.send(&m);
                let _ = to_live.send(n);
                let _ = to_test.send(n);
            }
            Next::Continue
        }
    });
    (server, seen, live)
}

#[test]
fn concurrent_snapshots_each_get_their_own_frame() {
    let (server, seen, live) = instrument(|_| false);
    let c = Client::connect(
        &server.addr(),
        ClientConfig::default().request_timeout(LONG),
    )
    .unwrap();
    let cam = c.camera();
    for round in 0..3u32 {
        let (first, second) = (2 * round + 1, 2 * round + 2);
        // A: started, its trigger on the wire, not waited for yet.
        let a = cam.submit_snapshot().unwrap();
        assert_eq!(seen.recv_timeout(LONG).unwrap(), first);
        // B: a blocking snapshot from another thread.
        let (b_tx, b_rx) = bounded(1);
        let b = {
            let cam = cam.clone();
            thread::spawn(move || b_tx.send(cam.snapshot()).unwrap())
        };
        // If B may trigger while A waits for its frame, B is alone waiting
        // for frames when A's arrives (with B's trigger). A bound only:
        // B returning here at all means it did not wait for A.
        let b_early = b_rx.recv_timeout(FRAME_AFTER + FRAME_AFTER / 2).ok();
        let a = a.wait().unwrap();
        let b_frame = match b_early {
            Some(r) => r,
            None => b_rx.recv_timeout(LONG).unwrap(),
        }
        .unwrap();
        b.join().unwrap();
        assert_eq!(seen.recv_timeout(LONG).unwrap(), second);
        println!(
            "round {round}: A got frame {}, B got frame {}",
            a.frame_number(),
            b_frame.frame_number(),
        );
        assert_eq!(a.frame_number(), first, "A took another snapshot's frame");
        assert_eq!(
            b_frame.frame_number(),
            second,
            "B took another snapshot's frame"
        );
    }
    c.close();
    drop(server);
    live.join().unwrap();
}

/// A snapshot that timed out after its trigger leaves its frame owed: the
/// next snapshot waits for that late frame instead of taking it for its own.
#[test]
fn a_late_frame_of_an_abandoned_snapshot_is_not_taken_by_the_next() {
    let (server, seen, live) = instrument(|_| false);
    let c = Client::connect(
        &server.addr(),
        ClientConfig::default().request_timeout(LONG),
    )
    .unwrap();
    let cam = c.camera();
    for round in 0..2u32 {
        let e = cam.clone().timeout(FRAME_AFTER / 3).snapshot().unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert_eq!(seen.recv_timeout(LONG).unwrap(), 2 * round + 1);
        // The next snapshot's trigger would bring the late frame at once.
        let f = cam.snapshot().unwrap();
        assert_eq!(seen.recv_timeout(LONG).unwrap(), 2 * round + 2);
        assert_eq!(f.frame_number(), 2 * round + 2, "took the late frame");
    }
    c.close();
    drop(server);
    live.join().unwrap();
}

/// An owed frame that never comes is given up after the late-reply window.
#[test]
fn an_owed_frame_that_never_comes_is_given_up_after_the_window() {
    let (server, seen, live) = instrument(|k| k == 1);
    let window = Duration::from_millis(400);
    let c = Client::connect(
        &server.addr(),
        ClientConfig::default()
            .request_timeout(LONG)
            .late_reply_window(window),
    )
    .unwrap();
    let cam = c.camera();
    let t = Instant::now();
    let e = cam
        .clone()
        .timeout(Duration::from_millis(100))
        .snapshot()
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let f = cam.snapshot().unwrap();
    assert_eq!(f.frame_number(), 2);
    assert!(t.elapsed() >= window, "the owed frame was given up early");
    assert_eq!(seen.try_iter().collect::<Vec<_>>(), [1, 2]);
    c.close();
    drop(server);
    live.join().unwrap();
}

/// A snapshot that cannot get its turn before its deadline says why.
#[test]
fn a_snapshot_behind_another_times_out_at_its_own_deadline() {
    let (server, seen, live) = instrument(|_| false);
    let c = Client::connect(
        &server.addr(),
        ClientConfig::default().request_timeout(LONG),
    )
    .unwrap();
    let cam = c.camera();
    let first = cam.submit_snapshot().unwrap();
    assert_eq!(seen.recv_timeout(LONG).unwrap(), 1);
    let t = Instant::now();
    let e = cam
        .clone()
        .timeout(Duration::from_millis(100))
        .snapshot()
        .unwrap_err();
    let took = t.elapsed();
    assert_eq!(
        e.timeout_phase(),
        Some(flamingo_client::TimeoutPhase::KeyBusy),
        "{e}"
    );
    assert!(e.to_string().contains("another snapshot"), "{e}");
    assert!(took < FRAME_AFTER, "waited {took:?}");
    assert_eq!(first.wait().unwrap().frame_number(), 1);
    // Nothing was sent for the snapshot that timed out.
    assert!(seen.try_recv().is_err());
    assert_eq!(cam.snapshot().unwrap().frame_number(), 2);
    c.close();
    drop(server);
    live.join().unwrap();
}
