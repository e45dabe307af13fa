//! Recordings: the file format under truncation and corruption (property
//! tests), the recording proxy (byte-exact, never held up by a slow disk),
//! replay into the simulator (same answers, a report of what it cannot
//! answer, bounded memory over long recordings), the facts report (on a
//! simulator session and on one with injected faults), and the round trip
//! through the `flamingo` tool: record a simulator session through the
//! proxy, replay it, and check the tool sees the same results.
//!
//! One test (`replaying_a_long_recording_stays_in_bounded_memory`) measures
//! the heap with a counting allocator; it runs alone (the others hold a
//! shared lock while it holds it exclusively).

#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flamingo_client::codec::{CommandCode as C, Flags, FrameReader, LiveHeader, Message};
use flamingo_client::record::{
    Direction, EndCause, Entry, Facts, Port, Proxy, ProxyConfig, Record, RecordErrorKind,
    RecordingReader, RecordingWriter,
};
use flamingo_client::sim::{Faults, ReplayConfig, ReplayPace, SimConfig, Simulator};
use flamingo_client::{Axis, Client, ClientConfig};
use parking_lot::RwLock;
use proptest::prelude::*;

use common::{ECHO, LONG};

// ------------------------------------------------------------ heap counting

/// Counts the bytes the process has allocated now and at its peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Held shared by every test, exclusively by the memory test.
static HEAP: RwLock<()> = RwLock::new(());

// ------------------------------------------------------------ helpers

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flamingo-record-test-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn small() -> SimConfig {
    SimConfig::default()
        .image_size(64, 48)
        .stage_velocity(200.0, 3600.0)
}

fn proxy_to(sim: &Simulator, path: &Path) -> Proxy {
    let cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), sim.addr());
    Proxy::create(cfg, path).expect("start the recorder")
}

fn connect(addr: SocketAddr) -> Client {
    Client::connect(
        &addr.to_string(),
        ClientConfig::default().request_timeout(LONG),
    )
    .expect("connect")
}

fn records(path: &Path) -> Vec<Record> {
    RecordingReader::open(path)
        .expect("open the recording")
        .collect::<Result<_, _>>()
        .expect("read the recording")
}

fn flagged(code: C) -> Message {
    Message::new(code).with_flags(Flags::TRIGGER_CALL_BACK)
}

/// A raw command connection (for unflagged sends and exact bytes).
struct Raw {
    s: TcpStream,
    r: FrameReader,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        s.set_nodelay(true).unwrap();
        Raw {
            s,
            r: FrameReader::new(1 << 26),
        }
    }
    fn send(&mut self, m: Message) {
        self.s.write_all(&m.to_bytes()).unwrap();
    }
    fn recv(&mut self) -> Message {
        let mut data = Vec::new();
        self.r
            .read_frame(&mut self.s, &mut data)
            .expect("a message")
    }
    fn request(&mut self, m: Message) -> Message {
        self.send(m);
        loop {
            let r = self.recv();
            if r.code == m.code {
                return r;
            }
        }
    }
}

/// What a client session sees, to compare the original with the replay.
#[derive(Debug, PartialEq)]
struct Seen {
    size: (u32, u32),
    positions: Vec<f64>,
    level: f64,
    stop_axis: Axis,
    stop_position: f64,
    settings_len: usize,
    snapshot: (u32, u32, u32),
    pixel_sum: u64,
}

fn session(addr: SocketAddr) -> Seen {
    let c = connect(addr);
    let size = c.camera().image_size().unwrap();
    let p = c.stage().positions().unwrap();
    let level = c.lasers().set_level_percent(2, 11.5).unwrap();
    let stop = c.stage().move_and_wait(Axis::Z, 20.0).unwrap();
    let settings = c.settings().load().unwrap();
    let frame = c.camera().snapshot().unwrap();
    let snapshot = (frame.width(), frame.height(), frame.frame_number());
    let pixel_sum = frame.pixels().iter().map(|&p| u64::from(p)).sum();
    c.close();
    Seen {
        size: (size.width, size.height),
        positions: Axis::ALL.iter().map(|a| p.get(*a)).collect(),
        level,
        stop_axis: stop.axis,
        stop_position: stop.position,
        settings_len: settings.raw().len(),
        snapshot,
        pixel_sum,
    }
}

// ------------------------------------------------------------ round trip (library)

#[test]
fn a_recorded_session_replays_with_the_same_answers() {
    let _heap = HEAP.read();
    let dir = TempDir::new("roundtrip");
    let path = dir.path("session.flrec");
    let sim = Simulator::start(small()).unwrap();
    let proxy = proxy_to(&sim, &path);
    let original = session(proxy.addr());
    let stats = proxy.stop().unwrap();
    drop(sim);
    assert!(stats.messages > 10, "{stats:?}");
    assert_eq!(stats.frames, 1, "{stats:?}");
    assert_eq!(stats.dropped_records, 0, "{stats:?}");

    for pace in [ReplayPace::Fast, ReplayPace::Recorded] {
        let replay = Simulator::replay_file(&path, ReplayConfig::default().pace(pace)).unwrap();
        let again = session(replay.addr());
        assert_eq!(again, original, "{pace:?}");
        assert!(replay.wait_replay_finished(LONG), "{pace:?}");
        let report = replay.replay_report().unwrap();
        assert_eq!(report.unanswerable_total, 0, "{report}");
        assert_eq!(report.answered, report.requests, "{report}");
        assert!(report.finished, "{report}");
    }
}

#[test]
fn replay_reports_every_request_it_cannot_answer() {
    let _heap = HEAP.read();
    let dir = TempDir::new("unanswerable");
    let path = dir.path("s.flrec");
    let sim = Simulator::start(small()).unwrap();
    let proxy = proxy_to(&sim, &path);
    let c = connect(proxy.addr());
    c.stage().position(Axis::X).unwrap();
    c.close();
    proxy.stop().unwrap();
    drop(sim);

    let replay =
        Simulator::replay_file(&path, ReplayConfig::default().pace(ReplayPace::Fast)).unwrap();
    let c = Client::connect(
        &replay.addr().to_string(),
        ClientConfig::default().request_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    // Recorded: answered with the recorded position.
    assert_eq!(c.stage().position(Axis::X).unwrap(), sim_home(Axis::X));
    // Not recorded: another axis, another code.
    assert!(c.stage().position(Axis::Y).unwrap_err().is_timeout());
    assert!(c.camera().image_size().unwrap_err().is_timeout());
    c.close();
    // A second connection: the recording had only one.
    let mut raw = Raw::connect(replay.addr());
    raw.send(flagged(C::STAGE_POSITION_GET).with_int32_data0(1));
    common::poll_until("the fourth request", LONG, || {
        replay.replay_report().unwrap().requests == 4
    });
    drop(raw);
    assert!(replay.wait_replay_finished(LONG));
    let report = replay.replay_report().unwrap();
    assert_eq!(report.answered, 1, "{report}");
    assert_eq!(report.unanswerable_total, 3, "{report}");
    let listed: Vec<(u64, C, i32)> = report
        .unanswerable
        .iter()
        .map(|u| (u.connection, u.code, u.int32_data0))
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, C::STAGE_POSITION_GET, 2),
            (1, C::CAMERA_IMAGE_SIZE_GET, 0),
            (2, C::STAGE_POSITION_GET, 1)
        ],
        "{report}"
    );
    assert!(
        report.unanswerable[2]
            .reason
            .contains("no command connection left"),
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("3 requests could not be answered") && text.contains("STAGE_POSITION_GET"),
        "{text}"
    );
}

fn sim_home(a: Axis) -> f64 {
    SimConfig::default().home[(a.wire() - 1) as usize]
}

// ------------------------------------------------------------ the proxy

/// A server that sends `script` to each client, then echoes everything the
/// client sends, byte for byte, until the client closes.
fn blaster(script: Vec<u8>) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(&script).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    let _ = s.write_all(&buf[..n]);
                }
            }
        }
        got
    });
    (addr, h)
}

/// Pseudo-random bytes with messages, garbage, marker fragments and a
/// message announcing more data than follows it.
fn messy_stream(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    while out.len() < n {
        match next() % 5 {
            0 => out.extend_from_slice(&flagged(C(0x7000 + (next() % 50) as u32)).to_bytes()),
            1 => {
                let k = (next() % 300) as usize;
                out.extend((0..k).map(|_| next() as u8));
            }
            2 => out.extend_from_slice(&[0x54, 0xE6, 0x21]),
            3 => {
                let d = (next() % 200) as u32;
                out.extend_from_slice(&flagged(C(0x7777)).with_additional_data_len(d).to_bytes());
                out.extend((0..d).map(|_| next() as u8));
            }
            _ => out.extend_from_slice(
                &flagged(C(0x6008))
                    .with_additional_data_len(1 << 30)
                    .to_bytes(),
            ),
        }
    }
    out
}

#[test]
fn the_proxy_forwards_every_byte_unchanged_both_ways() {
    let _heap = HEAP.read();
    let dir = TempDir::new("exact");
    let down = messy_stream(7, 300_000);
    let up = messy_stream(11, 200_000);
    let (server, h) = blaster(down.clone());
    let cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), server);
    let proxy = Proxy::create(cfg, dir.path("x.flrec")).unwrap();
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    // Write in odd-sized pieces while reading, so both directions flow.
    let mut writer = c.try_clone().unwrap();
    let up2 = up.clone();
    let w = std::thread::spawn(move || {
        for chunk in up2.chunks(777) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    w.join().unwrap();
    let echoed_to_server = h.join().unwrap();
    // What the client got: the script, then the echo of what it sent.
    assert_eq!(got.len(), down.len() + up.len());
    assert!(
        got[..down.len()] == down[..],
        "server-to-client bytes differ"
    );
    assert!(got[down.len()..] == up[..], "echoed bytes differ");
    assert!(echoed_to_server == up, "client-to-server bytes differ");
    let stats = proxy.stop().unwrap();
    assert_eq!(stats.bytes_to_instrument, up.len() as u64);
    assert_eq!(stats.bytes_to_client, (down.len() + up.len()) as u64);
    // The recording accounts for the streams: both ends recorded as closed,
    // with the byte counts.
    let recs = records(&dir.path("x.flrec"));
    let ends: Vec<(Direction, EndCause, u64)> = recs
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::StreamEnd {
                direction,
                cause,
                bytes,
                ..
            } => Some((*direction, *cause, *bytes)),
            _ => None,
        })
        .collect();
    assert!(ends.contains(&(Direction::ToInstrument, EndCause::Closed, up.len() as u64)));
    assert!(ends.contains(&(
        Direction::ToClient,
        EndCause::Closed,
        (down.len() + up.len()) as u64
    )));
    let skipped: u64 = recs
        .iter()
        .filter_map(|r| match r.entry {
            Entry::Skipped { bytes, .. } => Some(bytes),
            _ => None,
        })
        .sum();
    assert!(skipped > 0, "garbage is recorded as skipped bytes");
}

/// A file that takes nothing until released: the disk of a slow PC.
struct StuckDisk(crossbeam_channel::Receiver<()>, Vec<u8>);

impl Write for StuckDisk {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        self.1.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_slow_disk_never_holds_up_the_traffic() {
    let _heap = HEAP.read();
    let sim = Simulator::start(small()).unwrap();
    let (release, stuck) = crossbeam_channel::unbounded();
    let cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), sim.addr()).queue_bytes(64 * 1024);
    let proxy = Proxy::start(cfg, StuckDisk(stuck, Vec::new())).unwrap();
    let mut c = Raw::connect(proxy.addr());
    assert_eq!(
        c.request(flagged(C::SYSTEM_STATE_GET)).code,
        C::SYSTEM_STATE_GET
    );
    // 5000 events (about 1 MB of records) while the disk takes nothing.
    sim.update_faults(|f| f.flood = Some((C::UI_SET_GAUGE_VALUE, 5000, 0)));
    for i in 1..=5000 {
        let m = c.recv();
        assert_eq!((m.code, m.int32_data0), (C::UI_SET_GAUGE_VALUE, i));
    }
    let stats = proxy.stats();
    assert!(stats.dropped_records > 0, "{stats:?}");
    // Release the disk: the recording still finishes, and says what it lost.
    drop(release);
    drop(c);
    let stats = proxy.stop().unwrap();
    assert!(stats.dropped_records > 0, "{stats:?}");
}

#[test]
fn an_unreachable_instrument_closes_the_client_and_is_noted() {
    let _heap = HEAP.read();
    let dir = TempDir::new("unreachable");
    // A bound socket that does not listen: connections are refused.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let dead = reserved.local_addr().unwrap().as_socket().unwrap();
    let cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), dead);
    let proxy = Proxy::create(cfg, dir.path("u.flrec")).unwrap();
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    let stats = proxy.stop().unwrap();
    assert_eq!(stats.upstream_failures, 1);
    let notes: Vec<String> = records(&dir.path("u.flrec"))
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Note(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("cannot connect to the instrument")),
        "{notes:?}"
    );
}

#[test]
fn frames_are_recorded_with_subsampled_pixels_and_replayed_enlarged() {
    let _heap = HEAP.read();
    let dir = TempDir::new("pixels");
    let path = dir.path("p.flrec");
    let sim = Simulator::start(small()).unwrap();
    let cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), sim.addr()).pixels(4);
    let proxy = Proxy::create(cfg, &path).unwrap();
    let c = connect(proxy.addr());
    let original = c.camera().snapshot().unwrap();
    c.close();
    proxy.stop().unwrap();
    drop(sim);
    let frames: Vec<(LiveHeader, u16, Vec<u8>)> = records(&path)
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Frame {
                header,
                subsample,
                pixels,
                ..
            } => Some((header, subsample, pixels)),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 1);
    let (h, s, px) = &frames[0];
    assert_eq!((h.width, h.height, *s, px.len()), (64, 48, 4, 16 * 12 * 2));
    for (i, p) in px.chunks(2).enumerate() {
        let (x, y) = ((i % 16) * 4, (i / 16) * 4);
        let v = u16::from_le_bytes([p[0], p[1]]);
        assert_eq!(v, original.pixels()[y * 64 + x], "pixel ({x}, {y})");
    }
    let replay = Simulator::replay_file(&path, ReplayConfig::default()).unwrap();
    let c = connect(replay.addr());
    let again = c.camera().snapshot().unwrap();
    c.close();
    for y in 0..48 {
        for x in 0..64 {
            let src = original.pixels()[(y / 4 * 4) * 64 + x / 4 * 4];
            assert_eq!(again.pixels()[y * 64 + x], src, "pixel ({x}, {y})");
        }
    }
}

// ------------------------------------------------------------ facts

/// A session with injected faults and unflagged sends, on two connections.
fn faulty_session(path: &Path) {
    let faults = Faults {
        delay: [(C::SYSTEM_STATE_GET, Duration::from_millis(30))].into(),
        never_answer: [C::CAMERA_EXPOSURE_GET].into(),
        garbage_between: Some(3),
        ..Faults::default()
    };
    let sim = Simulator::start(small().faults(faults)).unwrap();
    let proxy = proxy_to(&sim, path);
    let mut a = Raw::connect(proxy.addr());
    let mut b = Raw::connect(proxy.addr());
    // Both connections are up before anything is broadcast.
    b.request(flagged(ECHO).with_int32_data0(5));
    for _ in 0..3 {
        a.request(flagged(C::SYSTEM_STATE_GET));
    }
    // Unflagged: STATE_GET is not answered, SETTINGS_LOAD is.
    a.send(Message::new(C::SYSTEM_STATE_GET));
    a.request(flagged(C::SYSTEM_STATE_GET));
    a.request(Message::new(C::COMMON_SCOPE_SETTINGS_LOAD));
    let pos = a.request(flagged(C::STAGE_POSITION_GET).with_int32_data0(2));
    assert_eq!(pos.int32_data0, 2);
    a.request(flagged(ECHO).with_int32_data0(9));
    a.send(flagged(C::CAMERA_EXPOSURE_GET)); // never answered
    sim.update_faults(|f| f.flood = Some((C::UI_SET_GAUGE_VALUE, 100, 0)));
    for c in [&mut a, &mut b] {
        let mut n = 0;
        while n < 100 {
            if c.recv().code == C::UI_SET_GAUGE_VALUE {
                n += 1;
            }
        }
    }
    // A fence: everything before it has been through the proxy.
    a.request(flagged(ECHO).with_int32_data0(10));
    b.request(flagged(ECHO).with_int32_data0(11));
    drop((a, b));
    proxy.stop().unwrap();
}

#[test]
fn facts_of_a_session_with_injected_faults() {
    let _heap = HEAP.read();
    let dir = TempDir::new("facts");
    let path = dir.path("faults.flrec");
    faulty_session(&path);
    let f = Facts::from_file(&path).unwrap();
    assert!(f.finished && f.problem.is_none(), "{f:?}");
    assert_eq!(f.command_connections, 2);
    let code = |c: C| f.codes.get(&c.0).unwrap_or_else(|| panic!("{c} in {f:#?}"));
    // Reply latency reflects the 30 ms delay.
    let st = code(C::SYSTEM_STATE_GET);
    assert_eq!((st.sent, st.sent_unflagged, st.replies), (5, 1, 4));
    assert!(st.latency.min >= Duration::from_millis(30), "{st:?}");
    assert_eq!((st.unflagged_answered, st.unflagged_unanswered), (0, 1));
    let load = code(C::COMMON_SCOPE_SETTINGS_LOAD);
    assert_eq!((load.unflagged_answered, load.unflagged_unanswered), (1, 0));
    assert_eq!((load.with_data, load.max_data), (1, 2958));
    // The axis is echoed.
    let pos = code(C::STAGE_POSITION_GET);
    assert_eq!((pos.replies, pos.echo_same, pos.echo_differs), (1, 1, 0));
    // Never answered.
    assert_eq!(code(C::CAMERA_EXPOSURE_GET).unanswered, 1);
    // The flood reached both connections: every copy was seen on the other.
    let gauge = code(C::UI_SET_GAUGE_VALUE);
    assert_eq!(gauge.unsolicited, 200, "{gauge:?}");
    assert_eq!(gauge.unsolicited_others_open, 200, "{gauge:?}");
    assert_eq!(gauge.unsolicited_seen_elsewhere, 200, "{gauge:?}");
    // Replies went to their own connection only.
    assert_eq!(st.replies_seen_elsewhere, 0);
    // The unknown code, and the garbage.
    assert!(f.unknown_codes().any(|c| c.code == ECHO && c.replies == 4));
    assert!(f.skipped_bytes.1 > 0, "garbage before every message");
    assert_eq!(f.skipped_bytes.0, 0);
}

// ------------------------------------------------------------ the file format

fn arb_message() -> impl Strategy<Value = Message> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<i32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(code, status, i0, flags, bits)| {
            Message::new(C(code))
                .with_status(status)
                .with_int32_data0(i0)
                .with_flags(Flags::from_bits(flags))
                .with_double_data(f64::from_bits(bits))
        })
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (
            arb_message(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>()
        )
            .prop_map(|(m, data, to_client)| {
                let n = data.len() as u32;
                Entry::Message {
                    direction: if to_client {
                        Direction::ToClient
                    } else {
                        Direction::ToInstrument
                    },
                    message: m.with_additional_data_len(n),
                    data_seen: n,
                    data,
                }
            }),
        (1u32..20, 1u32..20, 0u16..4).prop_map(|(w, h, s)| {
            let len = flamingo_client::record::subsampled_len(w, h, s) as usize;
            Entry::Frame {
                header: LiveHeader {
                    image_size: w * h * 2,
                    width: w,
                    height: h,
                    frame_number: w + h,
                    ..LiveHeader::default()
                },
                subsample: s,
                pixels_seen: w * h * 2,
                pixels: (0..len).map(|i| i as u8).collect(),
            }
        }),
        "[a-z ]{0,40}".prop_map(Entry::Note),
        (any::<u64>(), any::<bool>()).prop_map(|(bytes, to_client)| Entry::Skipped {
            direction: if to_client {
                Direction::ToClient
            } else {
                Direction::ToInstrument
            },
            bytes,
        }),
        "[0-9.:]{1,21}".prop_map(|peer| Entry::Open {
            port: Port::Command,
            peer
        }),
    ]
}

fn encode(entries: &[Entry]) -> (Vec<u8>, Vec<Record>, Vec<usize>) {
    let mut w = RecordingWriter::new(Vec::new(), &[("tool", "proptest")]).unwrap();
    let mut ends = vec![w.bytes() as usize];
    let mut recs = vec![Record {
        time: Duration::ZERO,
        conn: 0,
        entry: Entry::Meta(vec![("tool".into(), "proptest".into())]),
    }];
    for (i, e) in entries.iter().enumerate() {
        let r = Record {
            time: Duration::from_micros(i as u64 * 3),
            conn: (i % 3) as u32 + 1,
            entry: e.clone(),
        };
        w.write(&r).unwrap();
        ends.push(w.bytes() as usize);
        recs.push(r);
    }
    let bytes = w.finish(0, 0).unwrap();
    (bytes, recs, ends)
}

/// Reads all it can: the records before the first error, and the error.
fn read_all(bytes: &[u8]) -> (Vec<Record>, Option<flamingo_client::record::RecordError>) {
    let mut reader = match RecordingReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn records_round_trip(entries in proptest::collection::vec(arb_entry(), 0..20)) {
        let (bytes, recs, _) = encode(&entries);
        let (got, err) = read_all(&bytes);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(got.len(), recs.len() + 1);
        for (a, b) in got.iter().zip(&recs) {
            prop_assert_eq!(a.time, b.time);
            prop_assert_eq!(a.conn, b.conn);
            // Messages compare bitwise (NaN payloads).
            match (&a.entry, &b.entry) {
                (Entry::Message { message: x, data: dx, .. }, Entry::Message { message: y, data: dy, .. }) => {
                    prop_assert!(x.bitwise_eq(y));
                    prop_assert_eq!(dx, dy);
                }
                (x, y) => prop_assert_eq!(x, y),
            }
        }
        let last_is_end = matches!(got.last().unwrap().entry, Entry::End { .. });
        prop_assert!(last_is_end, "the last record is the end record");
    }

    /// A file cut anywhere gives every record before the cut, then either a
    /// clean end (cut between records) or a truncation error naming the
    /// offset of the record that was cut.
    #[test]
    fn a_truncated_file_gives_the_records_before_it_and_the_offset(
        entries in proptest::collection::vec(arb_entry(), 1..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let (bytes, recs, ends) = encode(&entries);
        let at = cut.index(bytes.len());
        let (got, err) = read_all(&bytes[..at]);
        let complete = ends.iter().filter(|&&e| e <= at).count();
        prop_assert_eq!(got.len(), complete, "cut at {}", at);
        prop_assert!(got.iter().zip(&recs).all(|(a, b)| a.time == b.time && a.conn == b.conn));
        match err {
            // Between records (or right after the file header).
            None => prop_assert!(ends.contains(&at) || at == 16, "cut at {} ends cleanly", at),
            Some(e) => {
                let start = if complete == 0 { 16 } else { ends[complete - 1] };
                prop_assert!(matches!(e.kind, RecordErrorKind::Truncated { .. }), "{}", e);
                prop_assert_eq!(e.offset as usize, if at < 16 { 0 } else { start }, "{}", e);
                let named = e.to_string().contains(&format!("byte {}", e.offset));
                prop_assert!(named || at < 16, "the message names the offset: {}", e);
            }
        }
    }

    /// Any byte changed anywhere is detected: an error at or before the
    /// damaged byte, and only intact records before it.
    #[test]
    fn a_damaged_byte_is_detected(
        entries in proptest::collection::vec(arb_entry(), 1..12),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (mut bytes, recs, ends) = encode(&entries);
        let at = pos.index(bytes.len());
        bytes[at] ^= flip;
        let (got, err) = read_all(&bytes);
        let e = err.expect("the damage is detected");
        prop_assert!(e.offset as usize <= at, "error at {} after the damage at {}: {}", e.offset, at, e);
        let intact = ends.iter().filter(|&&end| end <= at).count();
        prop_assert!(got.len() <= intact);
        prop_assert!(got.iter().zip(&recs).all(|(a, b)| a.time == b.time));
    }

    /// Arbitrary bytes, with or without a valid file header, never panic
    /// and never allocate what a length field claims.
    #[test]
    fn arbitrary_bytes_never_panic(
        mut junk in proptest::collection::vec(any::<u8>(), 0..2000),
        with_header in any::<bool>(),
    ) {
        if with_header {
            let (head, _, ends) = encode(&[]);
            let mut b = head[..ends[0]].to_vec();
            b.append(&mut junk);
            junk = b;
        }
        let _heap = HEAP.read();
        let _ = read_all(&junk);
    }
}

#[test]
fn a_huge_claimed_record_is_refused_without_allocating_it() {
    let _heap = HEAP.read();
    let (mut bytes, _, ends) = encode(&[Entry::Note("x".into())]);
    // The note's length field claims 4 GiB - 1.
    let at = ends[0];
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (got, err) = read_all(&bytes);
    assert_eq!(got.len(), 1);
    let e = err.unwrap();
    assert_eq!(e.offset as usize, at);
    assert!(matches!(e.kind, RecordErrorKind::TooLarge { .. }), "{e}");
    // Within the limit but far beyond the file: truncated, not allocated.
    bytes[at..at + 4].copy_from_slice(&(60u32 << 20).to_le_bytes());
    let (_, err) = read_all(&bytes);
    assert!(matches!(
        err.unwrap().kind,
        RecordErrorKind::Truncated { .. }
    ));
    assert!(matches!(
        RecordingReader::new(&b"not a recording"[..])
            .unwrap_err()
            .kind,
        RecordErrorKind::NotARecording
    ));
}

// ------------------------------------------------------------ bounded memory

/// Writes a recording of one connection that receives `n` events.
fn long_recording(path: &Path, n: u64) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = RecordingWriter::new(f, &[("tool", "test")]).unwrap();
    let at = |us: u64| Duration::from_micros(us);
    w.write(&Record {
        time: at(0),
        conn: 1,
        entry: Entry::Open {
            port: Port::Command,
            peer: "127.0.0.1:1".into(),
        },
    })
    .unwrap();
    for i in 0..n {
        let m = Message::new(C::UI_SET_GAUGE_VALUE)
            .with_int32_data0(i as i32)
            .with_int32_data1(n as i32);
        w.write(&Record {
            time: at(1 + i),
            conn: 1,
            entry: Entry::Message {
                direction: Direction::ToClient,
                message: m,
                data_seen: 0,
                data: Vec::new(),
            },
        })
        .unwrap();
    }
    w.finish(0, 0).unwrap();
}

#[test]
fn replaying_a_long_recording_stays_in_bounded_memory() {
    let _heap = HEAP.write();
    let dir = TempDir::new("long");
    let path = dir.path("long.flrec");
    let n = 300_000u64;
    long_recording(&path, n);
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert!(file_len > 45_000_000, "{file_len}");
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let replay =
        Simulator::replay_file(&path, ReplayConfig::default().pace(ReplayPace::Fast)).unwrap();
    let mut c = Raw::connect(replay.addr());
    for i in 0..n {
        let m = c.recv();
        assert_eq!((m.code, m.int32_data0), (C::UI_SET_GAUGE_VALUE, i as i32));
    }
    assert!(replay.wait_replay_finished(LONG));
    let peak = PEAK.load(Ordering::SeqCst) - base;
    drop(c);
    drop(replay);
    // The file is ~47 MB; the replay holds a window of it, never the whole.
    assert!(
        peak < 12 << 20,
        "replaying a {file_len}-byte recording peaked at {peak} bytes of heap"
    );
    let report_ok = peak < file_len as usize / 4;
    assert!(report_ok);
}

// ------------------------------------------------------------ the flamingo tool

/// Longest a tool run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The `flamingo` example next to this test's executable, built first if
/// it is missing or older than its sources (`cargo test --test record`
/// alone does not build examples).
fn flamingo_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> directory");
        let bin = profile_dir
            .join("examples")
            .join(format!("flamingo{}", std::env::consts::EXE_SUFFIX));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let mut newest = None;
        for p in ["src", "examples", "Cargo.toml"] {
            newest_mtime(&root.join(p), &mut newest);
        }
        if built.is_none() || newest > built {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--example", "flamingo"])
                .current_dir(root);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            assert!(cmd.status().expect("run cargo build").success());
        }
        bin
    })
}

fn newest_mtime(path: &Path, newest: &mut Option<std::time::SystemTime>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_mtime(&e.path(), newest);
        }
    } else if let Ok(m) = meta.modified() {
        if newest.is_none_or(|n| m > n) {
            *newest = Some(m);
        }
    }
}

/// A running `flamingo`, killed and reaped on every way out.
struct Tool {
    child: Child,
    lines: crossbeam_channel::Receiver<String>,
    readers: Vec<JoinHandle<String>>,
}

#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Tool {
    fn spawn(args: &[&str]) -> Tool {
        let mut child = Command::new(flamingo_bin())
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flamingo");
        let (tx, lines) = crossbeam_channel::unbounded();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let readers = vec![
            std::thread::spawn(move || {
                let mut all = String::new();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    all.push_str(&line);
                    all.push('\n');
                    let _ = tx.send(line);
                }
                all
            }),
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = BufReader::new(err).read_to_string(&mut s);
                s
            }),
        ];
        Tool {
            child,
            lines,
            readers,
        }
    }

    /// The next line on stdout.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(RUN_LIMIT)
            .expect("flamingo printed a line")
    }

    fn finish(mut self) -> Output {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "flamingo did not finish");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut texts = std::mem::take(&mut self.readers)
            .into_iter()
            .map(|h| h.join().unwrap());
        Output {
            code: status.code().expect("an exit code"),
            stdout: texts.next().unwrap_or_default(),
            stderr: texts.next().unwrap_or_default(),
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

fn run(args: &[&str]) -> Output {
    Tool::spawn(args).finish()
}

/// The raw value of the first `"key":` after each earlier key in turn (a
/// path into nested objects): strings unquoted, other values as written.
fn json_at(line: &str, path: &[&str]) -> String {
    let mut rest = line;
    for key in path {
        let pat = format!("\"{key}\":");
        let at = rest
            .find(&pat)
            .unwrap_or_else(|| panic!("no {path:?} in {line}"));
        rest = &rest[at + pat.len()..];
    }
    if let Some(s) = rest.strip_prefix('"') {
        s[..s.find('"').unwrap()].to_string()
    } else {
        let end = rest.find([',', '}']).unwrap();
        rest[..end].to_string()
    }
}

/// Removes a `"key":value` member (numbers only) from a flat JSON line.
fn without(line: &str, key: &str) -> String {
    let pat = format!("\"{key}\":");
    let Some(at) = line.find(&pat) else {
        return line.to_string();
    };
    let end = at + pat.len() + line[at + pat.len()..].find([',', '}']).unwrap();
    let end = if line[end..].starts_with(',') {
        end + 1
    } else {
        end
    };
    format!("{}{}", &line[..at], &line[end..]).replace(",}", "}")
}

/// Runs the tool's commands against `addr`, each in its own process, and
/// returns their JSON lines with the timing members removed.
fn cli_session(addr: SocketAddr, dir: &TempDir, tag: &str) -> Vec<String> {
    let zstack = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ZStack.txt");
    let zstack = zstack.to_str().unwrap().to_string();
    let settings = dir.path(&format!("settings-{tag}.txt"));
    let snap = dir.path(&format!("snap-{tag}.tif"));
    let (settings, snap) = (settings.to_str().unwrap(), snap.to_str().unwrap());
    let commands: Vec<Vec<&str>> = vec![
        vec!["state"],
        vec!["image-size"],
        vec!["position"],
        vec!["move", "--axis", "z", "--to", "20", "--wait"],
        vec!["settings", "--out", settings],
        vec!["snapshot", "--out", snap],
        vec!["workflow", &zstack, "--wait"],
        vec!["lasers", "off"],
        vec!["idle"],
    ];
    let addr = addr.to_string();
    commands
        .iter()
        .map(|cmd| {
            let mut args = vec!["--addr", addr.as_str(), "--json", "--timeout", "10"];
            args.extend_from_slice(cmd);
            let out = run(&args);
            assert_eq!(out.code, 0, "{cmd:?} against {tag}: {out:?}");
            let line = out.stdout.trim().to_string();
            without(&without(&line, "elapsed_ms"), "path")
        })
        .collect()
}

#[test]
fn the_tool_sees_the_same_results_after_record_and_replay() {
    let _heap = HEAP.read();
    let dir = TempDir::new("cli");
    let path = dir.path("cli.flrec");
    let sim = Simulator::start(small().max_planes(Some(25)).live_fps(200.0).seed(3)).unwrap();
    let proxy = proxy_to(&sim, &path);
    let original = cli_session(proxy.addr(), &dir, "original");
    let stats = proxy.stop().unwrap();
    drop(sim);
    assert_eq!(stats.dropped_records, 0);

    let path_s = path.to_str().unwrap();
    let tool = Tool::spawn(&[
        "--json",
        "replay",
        path_s,
        "--port",
        "0",
        "--until-done",
        "--for",
        "100",
    ]);
    let first = tool.line();
    let addr: SocketAddr = json_at(&first, &["addr"]).parse().unwrap();
    let replayed = cli_session(addr, &dir, "replay");
    let out = tool.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(replayed, original);
    for f in ["settings", "snap"] {
        let ext = if f == "snap" { "tif" } else { "txt" };
        let a = std::fs::read(dir.path(&format!("{f}-original.{ext}"))).unwrap();
        let b = std::fs::read(dir.path(&format!("{f}-replay.{ext}"))).unwrap();
        assert!(a == b, "{f} files differ");
    }
    let summary = out.stdout.lines().last().unwrap();
    assert_eq!(json_at(summary, &["unanswerable"]), "0", "{out:?}");
    assert_eq!(json_at(summary, &["finished"]), "true", "{out:?}");
    assert_eq!(json_at(summary, &["not_sent"]), "0", "{out:?}");

    // The facts report runs on this recording of the simulator.
    let out = run(&["facts", path_s, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.stdout.trim();
    assert_eq!(json_at(j, &["finished"]), "true");
    assert_eq!(json_at(j, &["command_connections"]), "9");
    assert_eq!(json_at(j, &["live_connections"]), "1");
    assert_eq!(json_at(j, &["codes", "0x6008", "echo", "same"]), "4");
    assert_eq!(json_at(j, &["codes", "0x6008", "echo", "differs"]), "0");
    assert_eq!(
        json_at(j, &["codes", "0x9004", "unsolicited", "count"]),
        "25"
    );
    // Polls of the state while waiting are as many as the waits took.
    let polls: u64 = json_at(j, &["codes", "0xA007", "latency_us", "count"])
        .parse()
        .unwrap();
    assert!(polls >= 2, "{polls}");
    let text = run(&["facts", path_s]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("finished cleanly"), "{text:?}");
    assert!(
        text.stdout.contains("STAGE_POSITION_GET 0x6008"),
        "{text:?}"
    );
}

#[test]
fn the_facts_command_on_injected_faults_and_damaged_files() {
    let _heap = HEAP.read();
    let dir = TempDir::new("facts-cli");
    let path = dir.path("faults.flrec");
    faulty_session(&path);
    let p = path.to_str().unwrap();
    let out = run(&["facts", p, "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.stdout.trim();
    assert_eq!(
        json_at(j, &["codes", "0xA007", "unflagged", "unanswered"]),
        "1"
    );
    assert_eq!(
        json_at(j, &["codes", "0x1009", "unflagged", "answered"]),
        "1"
    );
    assert_eq!(json_at(j, &["codes", "0x300A", "unanswered"]), "1");
    assert_eq!(
        json_at(j, &["codes", "0x9004", "unsolicited", "seen_elsewhere"]),
        "200"
    );
    assert_eq!(json_at(j, &["codes", "0x7777", "known"]), "false");
    let min: f64 = json_at(j, &["codes", "0xA007", "latency_us", "min"])
        .parse()
        .unwrap();
    assert!(min >= 30_000.0, "{min}");
    let text = run(&["facts", p]);
    for want in [
        "Messages sent without TRIGGER_CALL_BACK",
        "SYSTEM_STATE_GET 0xA007",
        "1 sent: 0 answered, 1 not",
        "0x7777",
        "which received 200 of them too",
    ] {
        assert!(text.stdout.contains(want), "{want:?} in {}", text.stdout);
    }

    // A truncated copy: the report of what is there, and a warning naming the offset.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path("cut.flrec");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let out = run(&["facts", cut.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .starts_with("warning: recording truncated at byte "),
        "{out:?}"
    );
    assert!(out.stdout.contains("not finished"), "{out:?}");
    // Not a recording at all: an error.
    let junk = dir.path("junk.flrec");
    std::fs::write(&junk, b"hello").unwrap();
    let out = run(&["facts", junk.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not a flamingo recording"), "{out:?}");
}

#[test]
fn the_record_command_records_until_its_time_is_up() {
    let _heap = HEAP.read();
    let dir = TempDir::new("record-cli");
    let path = dir.path("r.flrec");
    let sim = Simulator::start(small()).unwrap();
    let sim_addr = sim.addr().to_string();
    let tool = Tool::spawn(&[
        "--addr",
        &sim_addr,
        "--json",
        "record",
        "--out",
        path.to_str().unwrap(),
        "--for",
        "3",
    ]);
    let first = tool.line();
    assert_eq!(json_at(&first, &["upstream"]), sim_addr);
    let addr: SocketAddr = json_at(&first, &["addr"]).parse().unwrap();
    let c = connect(addr);
    assert_eq!(c.camera().image_size().unwrap().width, 64);
    c.close();
    let out = tool.finish();
    assert_eq!(out.code, 0, "{out:?}");
    let last = out.stdout.lines().last().unwrap();
    assert_eq!(json_at(last, &["messages"]), "2", "{out:?}");
    assert_eq!(json_at(last, &["connections"]), "1", "{out:?}");
    let mut r = RecordingReader::open(&path).unwrap();
    let n = r.by_ref().inspect(|x| assert!(x.is_ok(), "{x:?}")).count();
    assert!(r.finished() && n >= 6, "{n}");
}

/// Ctrl-C (SIGINT) stops the recorder cleanly: the file is finished.
#[cfg(unix)]
#[test]
fn ctrl_c_finishes_the_recording() {
    let _heap = HEAP.read();
    let dir = TempDir::new("sigint");
    let path = dir.path("i.flrec");
    let sim = Simulator::start(small()).unwrap();
    let sim_addr = sim.addr().to_string();
    let tool = Tool::spawn(&[
        "--addr",
        &sim_addr,
        "record",
        "--out",
        path.to_str().unwrap(),
    ]);
    let first = tool.line();
    let addr: SocketAddr = first.trim_start_matches("listening on ").parse().unwrap();
    let c = connect(addr);
    c.system().state().unwrap();
    let status = Command::new("kill")
        .args(["-INT", &tool.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tool.finish();
    assert_eq!(out.code, 130, "{out:?}");
    assert!(
        out.stderr.contains("interrupted: stopped recording"),
        "{out:?}"
    );
    assert!(out.stdout.contains("Recorded 2 messages"), "{out:?}");
    // The client was connected through the recorder: its link is closed.
    assert!(c.system().state().is_err());
    let mut r = RecordingReader::open(&path).unwrap();
    let kinds: Vec<&'static str> = r.by_ref().map(|x| x.unwrap().entry.kind_name()).collect();
    assert!(r.finished(), "{kinds:?}");
    assert!(kinds.contains(&"stream_end"), "{kinds:?}");
}
