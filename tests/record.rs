//! Recordings: the file format under truncation and corruption (property
//! tests), the recording proxy, replay into the simulator, the facts
//! report, and the round trip through the `flamingo` command-line tool
//! (record a simulator session through the proxy, replay it, and check the
//! tool sees the same results).

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flamingo_client::codec::{CommandCode as C, Flags, FrameReader, Message};
use flamingo_client::record::{
    Direction, Entry, Facts, Port, Proxy, ProxyConfig, Record, RecordingReader, RecordingWriter,
};
use flamingo_client::sim::{ReplayConfig, ReplayPace, SimConfig, Simulator};
use flamingo_client::{Axis, Client, ClientConfig};

use common::LONG;

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

fn connect(addr: std::net::SocketAddr) -> Client {
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

fn session(addr: std::net::SocketAddr) -> Seen {
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
