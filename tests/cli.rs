//! The `flamingo` command-line example, driven as a subprocess against an
//! in-process simulator (one per test, on ephemeral loopback ports).
//!
//! `cargo test` builds the example before running tests; it is found next
//! to this test's executable (`target/<profile>/examples/flamingo`). When it
//! is missing or older than its sources (`cargo test --test cli` alone does
//! not build examples), it is built once with `cargo build --example flamingo`.
//!
//! The parser, JSON writer and progress bar modules of the example are
//! included here too, so their unit tests run with `cargo test`.

#[path = "../examples/support/cli_args.rs"]
mod cli_args;
#[path = "../examples/support/cli_config.rs"]
mod cli_config;
#[path = "../examples/support/cli_interrupt.rs"]
mod cli_interrupt;
#[path = "../examples/support/cli_json.rs"]
mod cli_json;
#[path = "../examples/support/cli_progress.rs"]
mod cli_progress;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::sim::{Faults, SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig};

/// Longest a CLI run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ the binary

fn flamingo_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/cli-XXXX -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> directory");
        let bin = profile_dir
            .join("examples")
            .join(format!("flamingo{}", std::env::consts::EXE_SUFFIX));
        if is_stale(&bin) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--example", "flamingo"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build --example flamingo");
            assert!(status.success(), "cargo build --example flamingo failed");
        }
        assert!(
            bin.exists(),
            "example binary not found at {}",
            bin.display()
        );
        bin
    })
}

/// Missing, or older than a source it is built from (`cargo test --test cli`
/// alone does not rebuild examples).
fn is_stale(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = None;
    for dir in ["src", "examples"] {
        newest_mtime(&root.join(dir), &mut newest);
    }
    newest_mtime(&root.join("Cargo.toml"), &mut newest);
    newest.is_some_and(|n| n > built)
}

fn newest_mtime(path: &Path, newest: &mut Option<std::time::SystemTime>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_mtime(&entry.path(), newest);
        }
    } else if let Ok(m) = meta.modified() {
        if newest.is_none_or(|n| m > n) {
            *newest = Some(m);
        }
    }
}

// ------------------------------------------------------------ processes

/// Kills and reaps the child on every path (including a failed assertion).
struct ChildGuard {
    child: Child,
    readers: Vec<JoinHandle<Vec<u8>>>,
}

impl ChildGuard {
    fn spawn(args: &[&str]) -> ChildGuard {
        ChildGuard::spawn_env(args, &[])
    }

    /// Spawns with extra environment variables. The user's own
    /// FLAMINGO_ADDR and config file never count: a test gives its own.
    fn spawn_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> ChildGuard {
        let mut child = isolated(Command::new(flamingo_bin()))
            .args(args)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the flamingo example");
        let mut readers = Vec::new();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        readers.push(std::thread::spawn(move || read_all(out)));
        readers.push(std::thread::spawn(move || read_all(err)));
        ChildGuard { child, readers }
    }

    /// Spawns with stdout handed to the caller (for `sim`), stderr captured.
    fn spawn_with_stdout(args: &[&str]) -> (ChildGuard, std::process::ChildStdout) {
        let mut g = ChildGuard::spawn_raw(args);
        let out = g.child.stdout.take().expect("stdout");
        (g, out)
    }

    fn spawn_raw(args: &[&str]) -> ChildGuard {
        let child = isolated(Command::new(flamingo_bin()))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if args.contains(&"-v") {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start the flamingo example");
        ChildGuard {
            child,
            readers: Vec::new(),
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the exit (bounded), then collects the output.
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the flamingo example did not finish within {RUN_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut texts = std::mem::take(&mut self.readers)
            .into_iter()
            .map(|h| String::from_utf8(h.join().expect("reader thread")).expect("UTF-8 output"));
        Output {
            code: status.code().expect("exit code (not killed by a signal)"),
            stdout: texts.next().unwrap_or_default(),
            stderr: texts.next().unwrap_or_default(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // The pipes close with the child, so the readers end.
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

/// No FLAMINGO_ADDR, and a config file that does not exist.
fn isolated(mut cmd: Command) -> Command {
    cmd.env_remove("FLAMINGO_ADDR").env(
        "FLAMINGO_CONFIG",
        std::env::temp_dir().join(format!(
            "flamingo-cli-test-{}-no-config.txt",
            std::process::id()
        )),
    );
    cmd
}

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}

#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Output {
    ChildGuard::spawn(args).finish()
}

/// Runs `--addr <sim> --json <args>` and expects success and one JSON line.
fn run_json(sim: &Simulator, args: &[&str]) -> String {
    let addr = sim.addr().to_string();
    let mut all = vec!["--addr", addr.as_str(), "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert_eq!(out.code, 0, "{args:?} failed: {out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line expected: {out:?}");
    let line = lines[0].to_string();
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    line
}

/// Expects a failure with `code` and one stderr line starting with `prefix`.
fn expect_error(out: &Output, code: i32, prefix: &str) {
    assert_eq!(out.code, code, "{out:?}");
    assert!(out.stderr.starts_with(prefix), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one stderr line: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

// ------------------------------------------------------------ tiny JSON reading

/// The raw value of `key` in a flat JSON object: strings unescaped (\" and
/// \\ only), other values as written.
fn json_get(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    if let Some(s) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => out.push(chars.next()?),
                c => out.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}'])?;
        Some(rest[..end].to_string())
    }
}

fn json_f64(line: &str, key: &str) -> f64 {
    json_get(line, key)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {line}"))
}

// ------------------------------------------------------------ temp dirs

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flamingo-cli-test-{}-{name}-{}",
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

fn sim(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg).expect("start the simulator")
}

fn small() -> SimConfig {
    SimConfig::default().image_size(64, 48)
}

// ------------------------------------------------------------ commands

#[test]
fn state_reports_idle_and_error() {
    let s = sim(small());
    let line = run_json(&s, &["state"]);
    assert_eq!(line, r#"{"state":"idle","code":0}"#);
    s.update_faults(|f| f.error_state = true);
    let line = run_json(&s, &["state"]);
    assert_eq!(line, r#"{"state":"error","code":2}"#);
    // Human-readable form.
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "state"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("error (2)"), "{out:?}");
}

#[test]
fn image_size() {
    let s = sim(small());
    assert_eq!(run_json(&s, &["image-size"]), r#"{"width":64,"height":48}"#);
}

#[test]
fn position_reads_four_axes() {
    let start = [2.5, 10.25, 20.125, -90.0];
    let s = sim(small().start_position(start));
    let line = run_json(&s, &["position"]);
    for (key, want) in ["x", "y", "z", "r"].iter().zip(start) {
        assert_eq!(json_f64(&line, key), want, "{key} in {line}");
    }
}

#[test]
fn move_with_wait_reaches_the_target() {
    let s = sim(small());
    let line = run_json(&s, &["move", "--axis", "z", "--to", "20.5", "--wait"]);
    assert_eq!(json_get(&line, "axis").as_deref(), Some("z"));
    assert_eq!(json_f64(&line, "target"), 20.5);
    assert_eq!(json_get(&line, "stopped").as_deref(), Some("true"));
    assert!(json_f64(&line, "elapsed_ms") >= 0.0);
    // It waited for the stop: the axis is there and no longer moving.
    assert!(!s.stage_moving());
    assert!((s.stage_positions()[2] - 20.5).abs() < 1e-9);
}

#[test]
fn move_negative_target_without_wait() {
    let s = sim(small());
    let line = run_json(&s, &["move", "--axis", "r", "--to", "-45.5"]);
    assert_eq!(json_get(&line, "axis").as_deref(), Some("r"));
    assert_eq!(json_f64(&line, "target"), -45.5);
    assert_eq!(json_get(&line, "stopped").as_deref(), Some("false"));
}

#[test]
fn settings_are_saved_exactly() {
    let s = sim(small());
    let dir = TempDir::new("settings");
    let file = dir.path("ScopeSettings.txt");
    let line = run_json(&s, &["settings", "--out", file.to_str().unwrap()]);
    let want = s.settings_text();
    assert_eq!(json_f64(&line, "bytes"), want.len() as f64);
    assert_eq!(std::fs::read(&file).unwrap(), want);
}

/// Width and height from a little-endian baseline TIFF's first IFD.
fn tiff_size(file: &[u8]) -> (u32, u32) {
    assert_eq!(&file[..4], b"II*\0", "little-endian TIFF");
    let u16_at = |o: usize| u16::from_le_bytes([file[o], file[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(file[o..o + 4].try_into().unwrap());
    let ifd = u32_at(4) as usize;
    let n = u16_at(ifd) as usize;
    let (mut w, mut h) = (None, None);
    for i in 0..n {
        let e = ifd + 2 + 12 * i;
        let value = match u16_at(e + 2) {
            3 => u32::from(u16_at(e + 8)),
            _ => u32_at(e + 8),
        };
        match u16_at(e) {
            256 => w = Some(value),
            257 => h = Some(value),
            _ => {}
        }
    }
    (w.expect("ImageWidth"), h.expect("ImageLength"))
}

#[test]
fn snapshot_as_tiff() {
    let s = sim(small());
    let dir = TempDir::new("tif");
    let file = dir.path("snap.tif");
    let path = file.to_str().unwrap();
    let line = run_json(&s, &["snapshot", "--out", path]);
    assert_eq!(json_get(&line, "path").as_deref(), Some(path));
    assert_eq!(json_f64(&line, "width"), 64.0);
    assert_eq!(json_f64(&line, "height"), 48.0);
    let bytes = std::fs::read(&file).expect("the TIFF file exists");
    assert_eq!(tiff_size(&bytes), (64, 48));
    // The pixels are the simulator's first frame, unchanged, at the end of the file.
    let pixels = &bytes[bytes.len() - 64 * 48 * 2..];
    assert_eq!(flamingo_client::sim::verify_frame(64, 48, 0, pixels), None);
}

#[test]
fn snapshot_count_saves_a_tiff_stack_with_the_pixel_size() {
    let s = sim(small());
    let dir = TempDir::new("stack");
    let file = dir.path("stack.tif");
    let line = run_json(
        &s,
        &["snapshot", "--count", "3", "--out", file.to_str().unwrap()],
    );
    assert_eq!(json_f64(&line, "images"), 3.0);
    // Read back with an independent decoder: three pages, the simulator's
    // frames, and a resolution in pixels per micron.
    let mut d = tiff::decoder::Decoder::new(std::fs::File::open(&file).unwrap()).unwrap();
    let mut pages = 0;
    loop {
        assert_eq!(d.dimensions().unwrap(), (64, 48));
        let res = d.find_tag(tiff::tags::Tag::XResolution).unwrap();
        assert!(res.is_some(), "every page has a resolution");
        if pages == 0 {
            // ImageJ reads its description (units, slices) from page one.
            let desc = d.get_tag_ascii_string(tiff::tags::Tag::ImageDescription);
            assert!(
                desc.as_ref().is_ok_and(|t| t.contains("unit=micron")),
                "{desc:?}"
            );
        }
        pages += 1;
        if !d.more_images() {
            break;
        }
        d.next_image().unwrap();
    }
    assert_eq!(pages, 3);
    // A stack needs a TIFF file: refused before connecting.
    let out = run(&[
        "--addr",
        "127.0.0.1:9",
        "snapshot",
        "--count",
        "2",
        "--out",
        "x.png",
    ]);
    expect_error(&out, 2, "error: invalid argument: ");
}

#[test]
fn snapshot_as_png() {
    let s = sim(small());
    let dir = TempDir::new("png");
    let file = dir.path("snap.png");
    let line = run_json(&s, &["snapshot", "--out", file.to_str().unwrap()]);
    assert_eq!(json_f64(&line, "width"), 64.0);
    let decoder = png::Decoder::new(std::fs::File::open(&file).expect("the PNG file exists"));
    let reader = decoder.read_info().expect("a valid PNG");
    let info = reader.info();
    assert_eq!((info.width, info.height), (64, 48));
    assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
    assert_eq!(info.color_type, png::ColorType::Grayscale);
}

#[test]
fn snapshot_with_a_bad_extension_is_refused_before_connecting() {
    // No simulator at all: the argument is checked first.
    let out = run(&["--addr", "127.0.0.1:9", "snapshot", "--out", "x.jpg"]);
    expect_error(&out, 2, "error: invalid argument: ");
}

#[test]
fn live_frames() {
    let s = sim(small().live_fps(200.0));
    let line = run_json(&s, &["live", "--frames", "5"]);
    assert_eq!(json_f64(&line, "frames"), 5.0);
    assert!(json_f64(&line, "dropped") >= 0.0);
    assert!(json_f64(&line, "fps") > 0.0, "{line}");
    assert!(json_f64(&line, "mb_per_s") > 0.0, "{line}");
    // Live view was stopped again.
    assert!(!s.live_view_on());
}

#[test]
fn workflow_wait_completes() {
    let s = sim(small().plane_interval(Duration::from_micros(200)));
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ZStack.txt");
    let bytes = std::fs::read(&file).unwrap();
    let line = run_json(&s, &["workflow", file.to_str().unwrap(), "--wait"]);
    assert_eq!(json_f64(&line, "sent_bytes"), bytes.len() as f64);
    assert_eq!(
        json_get(&line, "completed").as_deref(),
        Some("true"),
        "{line}"
    );
    assert_eq!(json_f64(&line, "images"), 476.0);
    assert_eq!(s.workflows(), vec![bytes]);
}

#[test]
fn workflow_without_wait_and_missing_file() {
    let s = sim(small());
    let dir = TempDir::new("wf");
    // The vendor's snapshot file starts at y 1.7 mm, below the simulator's
    // soft limit (5 mm): refused until moved inside them.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/Snapshot.txt");
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "workflow", file.to_str().unwrap()]);
    expect_error(&out, 2, "error: invalid argument: workflow file Snapshot.txt: y 1.7 mm at the workflow's start position is outside");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("Y (mm) = 1.7", "Y (mm) = 17");
    let file = dir.path("Snapshot.txt");
    std::fs::write(&file, text).unwrap();
    let line = run_json(&s, &["workflow", file.to_str().unwrap()]);
    assert_eq!(json_get(&line, "completed").as_deref(), Some("false"));
    // Files are checked before connecting: the address does not matter.
    let missing = dir.path("missing.txt");
    let out = run(&[
        "--addr",
        "127.0.0.1:9",
        "workflow",
        missing.to_str().unwrap(),
    ]);
    expect_error(
        &out,
        2,
        "error: invalid argument: cannot read workflow file",
    );
    let empty = dir.path("empty.txt");
    std::fs::write(&empty, "\r\n").unwrap();
    let out = run(&["--addr", "127.0.0.1:9", "workflow", empty.to_str().unwrap()]);
    expect_error(&out, 2, "error: invalid argument: workflow file ");
    assert!(out.stderr.contains("empty"), "{out:?}");
    assert_eq!(s.workflows().len(), 1);
}

#[test]
fn watch_prints_events() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let mut child = ChildGuard::spawn(&["--addr", &addr, "--json", "watch", "--for", "0.5"]);
    // Keep sending until the watch ends, so some land inside its window
    // whenever it subscribes.
    let stop = Message::new(CommandCode::STAGE_MOTION_STOPPED)
        .with_int32_data0(1)
        .with_status(1)
        .with_double_data(7.5);
    let deadline = Instant::now() + RUN_LIMIT;
    while child.is_running() && Instant::now() < deadline {
        s.broadcast(stop);
        s.broadcast(Message::new(CommandCode(0x7777)).with_int32_data0(3));
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.finish();
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(!lines.is_empty(), "no events printed: {out:?}");
    for l in &lines {
        assert!(json_get(l, "event").is_some(), "{l}");
    }
    let motion = lines
        .iter()
        .find(|l| json_get(l, "event").as_deref() == Some("motion_stopped"))
        .expect("a motion_stopped event");
    assert_eq!(json_get(motion, "axis").as_deref(), Some("x"));
    assert_eq!(json_f64(motion, "position"), 7.5);
    let unknown = lines
        .iter()
        .find(|l| json_get(l, "event").as_deref() == Some("unknown"))
        .expect("an unknown event");
    assert_eq!(json_f64(unknown, "code"), f64::from(0x7777));
}

#[test]
fn sim_subcommand_serves_until_killed() {
    let (child, stdout) = ChildGuard::spawn_with_stdout(&["sim", "--port", "0"]);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(RUN_LIMIT)
        .expect("the simulator prints its address");
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let client = Client::connect(&addr, ClientConfig::default()).expect("connect to the sim");
    let reply = client
        .request(
            Message::new(CommandCode::CAMERA_IMAGE_SIZE_GET),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(reply.message.int32_data0, 2048);
    client.close();
    drop(child); // kills it
    reader.join().unwrap();
}

#[test]
fn help_texts() {
    let out = run(&["--help"]);
    assert_eq!(out.code, 0, "{out:?}");
    for want in [
        "Usage:",
        "Exit codes",
        "--addr",
        "--timeout",
        "--json",
        "workflow",
        "demo",
    ] {
        assert!(out.stdout.contains(want), "missing {want:?} in top help");
    }
    let out = run(&["move", "--help"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("--axis <x|y|z|r>"), "{out:?}");
    assert!(out.stdout.contains("\"elapsed_ms\""), "{out:?}");
    let out = run(&["help", "workflow"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("--wait"), "{out:?}");
}

#[test]
fn demo_runs_a_full_session() {
    let out = run(&["--json", "demo"]);
    assert_eq!(out.code, 0, "{out:?}");
    let steps: Vec<String> = out
        .stdout
        .lines()
        .map(|l| json_get(l, "step").unwrap_or_else(|| panic!("no step in {l}")))
        .collect();
    for want in [
        "state",
        "image_size",
        "position",
        "move",
        "snapshot",
        "live",
        "workflow",
        "events",
    ] {
        assert!(steps.iter().any(|s| s == want), "no {want} step: {out:?}");
    }
    let wf = out
        .stdout
        .lines()
        .find(|l| l.contains(r#""step":"workflow""#))
        .unwrap();
    assert_eq!(json_get(wf, "completed").as_deref(), Some("true"), "{wf}");
    let snap = out
        .stdout
        .lines()
        .find(|l| l.contains(r#""step":"snapshot""#))
        .unwrap();
    assert!(json_get(snap, "path").unwrap().ends_with(".tif"));
}

// ------------------------------------------------------------ errors

#[test]
fn cannot_connect_exits_3() {
    // A socket bound but not listening: connections are refused, and no
    // other test can take the port meanwhile.
    use socket2::{Domain, Socket, Type};
    let reserved = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    reserved.bind(&any.into()).unwrap();
    let port = reserved.local_addr().unwrap().as_socket().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    // Generous: Windows retries a refused connection for about 2 s.
    let out = run(&["--addr", &addr, "--timeout", "5", "state"]);
    drop(reserved);
    expect_error(&out, 3, &format!("error: cannot connect to {addr}"));
}

#[test]
fn timeout_exits_4() {
    let s = sim(small().faults(Faults {
        never_answer: [CommandCode::SYSTEM_STATE_GET].into(),
        ..Faults::default()
    }));
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "--timeout", "0.3", "state"]);
    expect_error(&out, 4, "error: timed out after 0.300 s");
}

#[test]
fn disconnect_exits_5() {
    let s = sim(small().faults(Faults {
        close_after_messages: Some(0),
        ..Faults::default()
    }));
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "position"]);
    expect_error(&out, 5, "error: disconnected: ");
}

#[test]
fn refused_and_busy_exit_6() {
    let s = sim(small());
    let addr = s.addr().to_string();
    // The device refuses (here by a fault): the message says what usually causes it.
    s.update_faults(|f| {
        f.status_override.insert(CommandCode::STAGE_POSITION_SET, 2);
    });
    let out = run(&["--addr", &addr, "move", "--axis", "x", "--to", "5"]);
    expect_error(
        &out,
        6,
        "error: device refused STAGE_POSITION_SET (status 2): usually the target is outside the stage's soft limits",
    );
    s.update_faults(|f| {
        f.status_override.insert(CommandCode::STAGE_POSITION_SET, 1);
    });
    let out = run(&["--addr", &addr, "move", "--axis", "x", "--to", "5"]);
    expect_error(&out, 6, "error: device busy");
}

#[test]
fn invalid_arguments_exit_2() {
    let out = run(&["move", "--axis", "q", "--to", "1"]);
    expect_error(&out, 2, "error: invalid argument: ");
    assert!(out.stderr.contains("\"q\""), "{out:?}");
    for args in [
        &["--timeout", "-1", "state"][..],
        &["--timeout", "NaN", "state"],
        &["--timeout", "soon", "state"],
        &["frobnicate"],
        &[],
        &["live", "--frames", "0"],
    ] {
        let out = run(args);
        expect_error(&out, 2, "error: invalid argument: ");
    }
}

// ------------------------------------------------------------ conventions

#[test]
fn version_and_typo_suggestions() {
    let out = run(&["--version"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("flamingo {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["stat"]);
    expect_error(&out, 2, "error: invalid argument: unknown command \"stat\"");
    assert!(out.stderr.contains("did you mean state?"), "{out:?}");
    let out = run(&["move", "--axis", "x", "--to", "1", "--wiat"]);
    expect_error(&out, 2, "error: invalid argument: ");
    assert!(out.stderr.contains("did you mean --wait?"), "{out:?}");
    // `help CMD` and `CMD --help` show the same help.
    let a = run(&["help", "halt"]);
    let b = run(&["halt", "--help"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stdout.contains("--axis"), "{a:?}");
    assert_eq!(a.stdout, b.stdout);
    // No colour codes when the output is not a terminal.
    assert!(!a.stdout.contains('\x1b'), "{a:?}");
    assert!(!out.stderr.contains('\x1b'), "{out:?}");
}

#[test]
fn global_options_after_the_command() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let out = run(&["state", "--json", "--addr", &addr, "--timeout", "2"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), r#"{"state":"idle","code":0}"#);
}

/// With --json, an error is one JSON object on stderr with the same words
/// and the same exit code.
#[test]
fn json_errors() {
    let out = run(&["--json", "move", "--axis", "q", "--to", "1"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    let msg = json_get(line, "error").unwrap();
    assert!(msg.starts_with("invalid argument: axis \"q\""), "{msg}");
    assert_eq!(json_f64(line, "exit_code"), 2.0);
    // The same words as without --json.
    let plain = run(&["move", "--axis", "q", "--to", "1"]);
    assert_eq!(plain.stderr.trim(), format!("error: {msg}"));

    let s = sim(small().faults(Faults {
        never_answer: [CommandCode::SYSTEM_STATE_GET].into(),
        ..Faults::default()
    }));
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "--timeout", "0.3", "state", "--json"]);
    assert_eq!(out.code, 4, "{out:?}");
    let line = out.stderr.trim();
    assert!(
        json_get(line, "error")
            .unwrap()
            .starts_with("timed out after 0.300 s"),
        "{line}"
    );
    assert_eq!(json_f64(line, "exit_code"), 4.0);
}

// ------------------------------------------------------------ limits

#[test]
fn move_outside_the_soft_limits_is_refused_before_sending() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "move", "--axis", "z", "--to", "30"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: z target 30 mm is outside",
    );
    // Names the axis, the target and the limits (from the settings).
    assert!(out.stderr.contains("11 to 25 mm"), "{out:?}");
    assert!(out.stderr.contains("nothing was sent"), "{out:?}");
    assert!(!s
        .received_codes()
        .contains(&CommandCode::STAGE_POSITION_SET));
    // Inside: sent.
    run_json(&s, &["move", "--axis", "z", "--to", "24.5"]);
    assert!(s
        .received_codes()
        .contains(&CommandCode::STAGE_POSITION_SET));
}

#[test]
fn settings_without_limits_warn_and_send() {
    let s = sim(small().settings_text("<Type>\n  Microscope name = test\n</Type>\n"));
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "move", "--axis", "x", "--to", "5"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .starts_with("warning: the microscope's settings give no soft limits for x"),
        "{out:?}"
    );
}

// ------------------------------------------------------------ safety commands

/// A simulator whose stage is slow enough to be caught moving.
fn slow_stage() -> SimConfig {
    small().stage_velocity(0.5, 10.0)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + RUN_LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn client(s: &Simulator) -> Client {
    Client::connect(&s.addr().to_string(), ClientConfig::default()).unwrap()
}

#[test]
fn halt_stops_every_axis_or_one() {
    use flamingo_client::{Axis, EventKind};
    let s = sim(slow_stage());
    let c = client(&s);
    let events = c.subscribe();
    c.stage().move_to(Axis::X, 14.0).unwrap();
    c.stage().move_to(Axis::Y, 6.0).unwrap();
    assert!(s.stage_moving());
    let line = run_json(&s, &["halt", "--axis", "y"]);
    assert_eq!(json_get(&line, "halted").as_deref(), Some("y"));
    // y stops where it was (its motion-stopped event); x keeps moving.
    let y = json_f64(&line, "position");
    let stopped = loop {
        let ev = events.recv_timeout(RUN_LIMIT).expect("y stops");
        if let EventKind::MotionStopped {
            axis: Axis::Y,
            position,
            ..
        } = ev.kind
        {
            break position;
        }
    };
    assert!((stopped - y).abs() < 1e-9, "{stopped} vs {y}");
    assert!(s.stage_moving(), "x should still move");
    let line = run_json(&s, &["halt"]);
    assert_eq!(line, r#"{"halted":"all"}"#);
    wait_until("the stage to stop", || !s.stage_moving());
    assert!(s.stage_positions()[0] < 14.0);
    c.close();
}

#[test]
fn lasers_off_and_idle() {
    let s = sim(small());
    assert_eq!(run_json(&s, &["lasers", "off"]), r#"{"lasers":"off"}"#);
    assert!(s.received_codes().contains(&CommandCode::LASER_ALL_DISABLE));
    assert_eq!(run_json(&s, &["idle"]), r#"{"state":"idle","code":0}"#);
    assert!(s.received_codes().contains(&CommandCode::SYSTEM_STATE_IDLE));
}

#[test]
fn workflow_stop_ends_a_running_workflow() {
    let s = sim(small().plane_interval(Duration::from_millis(20)));
    let c = client(&s);
    let wf = flamingo_client::devices::Workflow::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ZStack.txt"),
    )
    .unwrap();
    let _run = c.workflows().start(&wf).unwrap();
    assert_eq!(s.system_state(), 1);
    assert_eq!(
        run_json(&s, &["workflow", "stop"]),
        r#"{"workflow":"stopped"}"#
    );
    assert_eq!(s.system_state(), 0);
    assert_eq!(s.counters().workflows_stopped, 1);
    c.close();
}

// ------------------------------------------------------------ workflow files

#[test]
fn workflow_check_validates_without_sending() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ZStack.txt");
    // No microscope: the file is checked, the soft limits are not (a warning says so).
    let out = run(&[
        "--addr",
        "127.0.0.1:9",
        "--json",
        "workflow",
        "check",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        r#"{"valid":true,"planes":476,"limits_checked":false}"#
    );
    assert!(out.stderr.contains("soft limits not checked"), "{out:?}");
    let dir = TempDir::new("check");
    let bad = dir.path("bad.txt");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("Number of planes = 476", "Number of planes = -4");
    std::fs::write(&bad, text).unwrap();
    let out = run(&["workflow", "check", bad.to_str().unwrap()]);
    expect_error(&out, 2, "error: invalid argument: workflow file ");
    assert!(
        out.stderr.contains("line 30: \"Number of planes\""),
        "{out:?}"
    );
}

#[test]
fn a_garbage_workflow_is_refused_before_anything_is_sent() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let dir = TempDir::new("garbage");
    let garbage = dir.path("garbage.txt");
    std::fs::write(&garbage, "garbage\n").unwrap();
    let out = run(&[
        "--addr",
        &addr,
        "workflow",
        garbage.to_str().unwrap(),
        "--wait",
    ]);
    expect_error(&out, 2, "error: invalid argument: workflow file ");
    assert!(out.stderr.contains("line 1: \"garbage\""), "{out:?}");
    assert!(s.workflows().is_empty());
    // The library refuses it too, and so does the simulator, as the
    // instrument does, when it is sent all the same.
    let c = client(&s);
    let wf = flamingo_client::devices::Workflow::from_text("garbage\n").unwrap();
    match c.workflows().start(&wf) {
        Err(flamingo_client::Error::InvalidArgument { .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(s.workflows().is_empty());
    let reply = c
        .request_with_data(
            flamingo_client::codec::Message::new(CommandCode::CAMERA_WORK_FLOW_START),
            wf.as_bytes(),
            Duration::from_secs(5),
        )
        .unwrap();
    match c.check_status(&reply) {
        Err(flamingo_client::Error::Refused { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.system_state(), 0);
    c.close();
}

// ------------------------------------------------------------ the operator's day

/// The messages the simulator received with `code`.
fn received(s: &Simulator, code: CommandCode) -> Vec<Message> {
    s.received()
        .into_iter()
        .filter(|r| r.message.code == code)
        .map(|r| r.message)
        .collect()
}

#[test]
fn lasers_set_level_on_and_off_per_line() {
    let s = sim(small());
    assert_eq!(
        run_json(&s, &["lasers", "set", "2", "10.5"]),
        r#"{"laser":2,"percent":10.5}"#
    );
    assert_eq!(s.laser_level(2), Some(10.5));
    assert_eq!(
        run_json(&s, &["lasers", "level"]),
        r#"{"laser1":0,"laser2":10.5,"laser3":0,"laser4":0}"#
    );
    assert_eq!(
        run_json(&s, &["lasers", "level", "2"]),
        r#"{"laser":2,"percent":10.5}"#
    );
    assert_eq!(
        run_json(&s, &["lasers", "on", "3"]),
        r#"{"laser":3,"on":true}"#
    );
    assert_eq!(
        received(&s, CommandCode::LASER_PREVIEW_ENABLE)[0].int32_data0,
        3
    );
    assert_eq!(
        run_json(&s, &["lasers", "off", "3"]),
        r#"{"laser":3,"on":false}"#
    );
    assert_eq!(
        received(&s, CommandCode::LASER_PREVIEW_DISABLE)[0].int32_data0,
        3
    );
    // Every laser off, as before.
    assert_eq!(run_json(&s, &["lasers", "off"]), r#"{"lasers":"off"}"#);
    // Human output.
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "lasers", "level", "2"]);
    assert_eq!(out.stdout.trim(), "Laser 2: 10.50 %", "{out:?}");
    // Mistakes name the command's own choices; nothing is sent.
    let before = s.received().len();
    let out = run(&["--addr", &addr, "lasers", "set", "5", "10"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: laser \"5\" is not one of the lasers 1, 2, 3 or 4",
    );
    let out = run(&["--addr", &addr, "lasers", "set", "2", "120"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: PERCENT \"120\" is not a power from 0 to 100",
    );
    let out = run(&["lasers", "of"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: unknown command \"of\" for `lasers` (did you mean off?); `lasers` has: off, on, set, level",
    );
    let out = run(&["lasers"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: `lasers` needs a command: off, on, set or level",
    );
    assert_eq!(s.received().len(), before);
}

#[test]
fn led_colour_and_power_or_off() {
    let s = sim(small());
    assert_eq!(
        run_json(&s, &["led", "green", "40"]),
        r#"{"led":"green","percent":40}"#
    );
    let set = received(&s, CommandCode::LED_SET);
    assert_eq!(set[0].int32_data0, 1, "green is colour 1");
    assert_eq!(
        set[0].int32_data1,
        flamingo_client::devices::led_level_from_percent(40.0).unwrap() as i32
    );
    assert_eq!(received(&s, CommandCode::LED_PREVIEW_ENABLE).len(), 1);
    assert_eq!(run_json(&s, &["led", "off"]), r#"{"led":"off"}"#);
    assert_eq!(received(&s, CommandCode::LED_PREVIEW_DISABLE).len(), 1);
    let out = run(&["led", "purple", "40"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: unknown command \"purple\" for `led`; `led` has: red, green, blue, white, off",
    );
    let out = run(&["led", "red"]);
    expect_error(&out, 2, "error: invalid argument: ");
    assert!(out.stderr.contains("PERCENT"), "{out:?}");
}

#[test]
fn filter_wheel_shows_and_turns() {
    let s = sim(small());
    assert_eq!(
        run_json(&s, &["filter"]),
        r#"{"filter":1,"description":"460/50"}"#
    );
    assert_eq!(
        run_json(&s, &["filter", "2"]),
        r#"{"filter":2,"description":"525/50"}"#
    );
    assert_eq!(
        received(&s, CommandCode::FILTER_POSITION_SET)[0].int32_data0,
        2
    );
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "filter"]);
    assert_eq!(out.stdout.trim(), "Filter wheel at position 2 (525/50)");
    let out = run(&["--addr", &addr, "filter", "9"]);
    expect_error(&out, 2, "error: invalid argument: POSITION \"9\"");
}

#[test]
fn exposure_shows_and_sets_with_a_unit() {
    let s = sim(small().exposure_us(9002));
    assert_eq!(run_json(&s, &["exposure"]), r#"{"exposure_us":9002}"#);
    assert_eq!(
        run_json(&s, &["exposure", "20ms"]),
        r#"{"exposure_us":20000}"#
    );
    assert_eq!(
        run_json(&s, &["exposure", "500us"]),
        r#"{"exposure_us":500}"#
    );
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "exposure"]);
    assert_eq!(out.stdout.trim(), "Camera exposure: 500 µs (500 µs)");
    let out = run(&["--addr", &addr, "exposure", "10"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: exposure \"10\" has no unit",
    );
    let out = run(&["exposure", "2min"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: exposure \"2min\" has an unknown unit",
    );
    let out = run(&["exposure", "61s"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: exposure \"61s\" is not a time",
    );
}

#[test]
fn home_one_axis_or_every_axis_with_a_confirmation() {
    let s = sim(small().start_position([5.0, 10.0, 15.0, 0.0]));
    // Every axis needs --yes: refused before connecting.
    let out = run(&["--addr", "127.0.0.1:9", "home"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: `home` moves every axis of the stage at once; add --yes",
    );
    let line = run_json(&s, &["home", "--axis", "z"]);
    assert_eq!(json_get(&line, "homed").as_deref(), Some("z"));
    assert_eq!(json_f64(&line, "position"), 19.753);
    assert_eq!(s.stage_positions(), [5.0, 10.0, 19.753, 0.0]);
    let line = run_json(&s, &["home", "--yes"]);
    assert_eq!(json_get(&line, "homed").as_deref(), Some("all"));
    assert_eq!(json_f64(&line, "x"), 8.032);
    assert_eq!(json_f64(&line, "r"), -217.965);
    assert_eq!(s.stage_positions(), [8.032, 23.898, 19.753, -217.965]);
    assert_eq!(received(&s, CommandCode::STAGE_HOME).len(), 1);
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "home", "--axis", "x", "--yes"]);
    expect_error(
        &out,
        2,
        "error: invalid argument: give --yes or --axis, not both",
    );
}

#[test]
fn status_shows_everything_in_one_call() {
    let s = sim(small().exposure_us(9002));
    for cmd in ["status", "info"] {
        let line = run_json(&s, &[cmd]);
        assert_eq!(json_get(&line, "state").as_deref(), Some("idle"), "{line}");
        assert_eq!(json_f64(&line, "z"), 19.753);
        assert_eq!(json_f64(&line, "width"), 64.0);
        assert_eq!(json_f64(&line, "exposure_us"), 9002.0);
        // The simulator's pixel follows from its 6.5 µm camera pixel and
        // the settings' 6.205x objective.
        assert!(
            (json_f64(&line, "pixel_um") - 6.5 / 6.205).abs() < 1e-9,
            "{line}"
        );
        assert_eq!(json_f64(&line, "laser2"), 0.0);
        assert_eq!(json_get(&line, "led").as_deref(), Some("green"));
        assert_eq!(json_get(&line, "led_on").as_deref(), Some("false"));
        assert_eq!(json_f64(&line, "filter"), 1.0);
        assert_eq!(
            json_get(&line, "filter_description").as_deref(),
            Some("460/50")
        );
        assert_eq!(json_get(&line, "microscope").as_deref(), Some("n7"));
        assert_eq!(json_get(&line, "addr"), Some(s.addr().to_string()));
        assert_eq!(
            json_get(&line, "live_addr"),
            Some(s.live_addr().to_string())
        );
        assert!(json_f64(&line, "round_trip_ms") >= 0.0);
        assert!(json_get(&line, "soft_limits")
            .unwrap()
            .contains("z 11 to 25 mm"));
    }
    // A part that does not answer is unknown, with a warning; the rest shows.
    s.update_faults(|f| {
        f.never_answer.insert(CommandCode::FILTER_POSITION_GET);
    });
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "--timeout", "0.5", "status"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Filter:    unknown"), "{out:?}");
    assert!(out.stdout.contains("State:     idle (0)"), "{out:?}");
    assert!(out.stdout.contains("Lasers:    1 0.00 %"), "{out:?}");
    assert!(
        out.stderr
            .starts_with("warning: the filter wheel position unknown: timed out"),
        "{out:?}"
    );
}

#[test]
fn help_of_a_command_before_or_after_it() {
    let a = run(&["-h", "move"]);
    let b = run(&["move", "--help"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(a.stdout, b.stdout);
    assert!(a.stdout.contains("--axis <x|y|z|r>"), "{a:?}");
    let a = run(&["--help", "lasers", "set"]);
    assert!(a.stdout.contains("<LINE> <PERCENT>"), "{a:?}");
    let out = run(&["help", "lasers"]);
    for sub in ["off", "on", "set", "level"] {
        assert!(out.stdout.contains(&format!("  {sub} ")), "{sub}: {out:?}");
    }
}

// ------------------------------------------------------------ the same safety everywhere

/// The Z-stack fixture with one value changed.
fn zstack_with(dir: &TempDir, from: &str, to: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ZStack.txt"))
            .unwrap();
    assert!(text.contains(from), "{from}");
    let path = dir.path("wf.txt");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn a_workflow_outside_the_soft_limits_is_refused_everywhere() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let dir = TempDir::new("limits");
    for (from, to, says) in [
        (
            "Z (mm) = 20.621",
            "Z (mm) = 5",
            "z 5 mm at the workflow's start position is outside the stage's soft limits for z, 11 to 25 mm",
        ),
        (
            "Y (mm) = 20\n",
            "Y (mm) = 200\n",
            "y 200 mm at the workflow's end position is outside the stage's soft limits for y, 5 to 25 mm",
        ),
    ] {
        let file = zstack_with(&dir, from, to);
        let file = file.to_str().unwrap();
        // `workflow check` against the microscope's limits.
        let out = run(&["--addr", &addr, "workflow", "check", file]);
        expect_error(&out, 2, "error: invalid argument: workflow file wf.txt: ");
        assert!(out.stderr.contains(says), "{out:?}");
        // ... and against a saved settings file, with no microscope.
        let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ScopeSettings.txt");
        let out = run(&[
            "--addr",
            "127.0.0.1:9",
            "workflow",
            "check",
            file,
            "--settings",
            settings.to_str().unwrap(),
        ]);
        expect_error(&out, 2, "error: invalid argument: workflow file wf.txt: ");
        assert!(out.stderr.contains(says), "{out:?}");
        // Starting it: refused before anything is sent.
        let out = run(&["--addr", &addr, "workflow", file, "--wait"]);
        expect_error(&out, 2, "error: invalid argument: workflow file wf.txt: ");
        assert!(out.stderr.contains(says), "{out:?}");
        assert!(out.stderr.contains("nothing was sent"), "{out:?}");
    }
    assert!(s.workflows().is_empty());
    assert_eq!(s.system_state(), 0);
    // Within the limits: checked against the microscope, then run.
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ZStack.txt");
    let line = run_json(&s, &["workflow", "check", good.to_str().unwrap()]);
    assert_eq!(json_get(&line, "limits_checked").as_deref(), Some("true"));
    assert!(json_get(&line, "soft_limits")
        .unwrap()
        .contains("y 5 to 25 mm"));
    let file = zstack_with(&dir, "Number of planes = 476", "Number of planes = 3");
    let line = run_json(&s, &["workflow", file.to_str().unwrap(), "--wait"]);
    assert_eq!(
        json_get(&line, "completed").as_deref(),
        Some("true"),
        "{line}"
    );
}

// ------------------------------------------------------------ a lab PC

#[test]
fn the_address_comes_from_flamingo_addr_or_the_config_file() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let dir = TempDir::new("config");
    let config = dir.path("config.txt");
    let cfg = config.as_os_str();
    let run_env =
        |args: &[&str], env: &[(&str, &std::ffi::OsStr)]| ChildGuard::spawn_env(args, env).finish();
    // FLAMINGO_ADDR: no --addr needed.
    let out = run_env(
        &["--json", "state"],
        &[("FLAMINGO_ADDR", addr.as_ref()), ("FLAMINGO_CONFIG", cfg)],
    );
    assert_eq!(out.stdout.trim(), r#"{"state":"idle","code":0}"#, "{out:?}");
    // `config save` writes the address in use to the config file...
    let out = run_env(
        &["--addr", &addr, "--json", "config", "save"],
        &[("FLAMINGO_CONFIG", cfg)],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(json_get(&out.stdout, "saved").as_deref(), Some("true"));
    assert_eq!(
        json_get(&out.stdout, "config_file"),
        Some(config.display().to_string())
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("addr = {addr}\n")), "{text}");
    // ... which later commands use.
    let out = run_env(&["--json", "position"], &[("FLAMINGO_CONFIG", cfg)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(json_f64(&out.stdout, "z"), 19.753);
    let out = run_env(&["--json", "config"], &[("FLAMINGO_CONFIG", cfg)]);
    assert_eq!(json_get(&out.stdout, "addr"), Some(addr.clone()));
    assert_eq!(
        json_get(&out.stdout, "addr_from"),
        Some(format!("{} line 2", config.display()))
    );
    // FLAMINGO_ADDR beats the file, --addr beats both.
    let out = run_env(
        &["--json", "config"],
        &[
            ("FLAMINGO_CONFIG", cfg),
            ("FLAMINGO_ADDR", "10.0.0.7:53717".as_ref()),
        ],
    );
    assert_eq!(
        json_get(&out.stdout, "addr").as_deref(),
        Some("10.0.0.7:53717")
    );
    assert_eq!(
        json_get(&out.stdout, "addr_from").as_deref(),
        Some("the environment variable FLAMINGO_ADDR")
    );
    let out = run_env(
        &["--addr", "10.0.0.8:53717", "--json", "config"],
        &[
            ("FLAMINGO_CONFIG", cfg),
            ("FLAMINGO_ADDR", "10.0.0.7:53717".as_ref()),
        ],
    );
    assert_eq!(
        json_get(&out.stdout, "addr").as_deref(),
        Some("10.0.0.8:53717")
    );
    assert_eq!(
        json_get(&out.stdout, "addr_from").as_deref(),
        Some("the command line")
    );
    // Mistakes name where they are.
    let out = run_env(&["state"], &[("FLAMINGO_ADDR", "nowhere".as_ref())]);
    expect_error(
        &out,
        2,
        "error: invalid argument: the environment variable FLAMINGO_ADDR: --addr \"nowhere\"",
    );
    std::fs::write(&config, "addr = 127.0.0.1:1\ncolour = red\n").unwrap();
    let out = run_env(&["state"], &[("FLAMINGO_CONFIG", cfg)]);
    expect_error(
        &out,
        2,
        &format!(
            "error: invalid argument: config file {} line 2: unknown setting \"colour\"",
            config.display()
        ),
    );
}

// ------------------------------------------------------------ small things

#[test]
fn idle_reads_the_state_back() {
    let s = sim(small());
    s.update_faults(|f| f.error_state = true);
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "idle"]);
    expect_error(
        &out,
        6,
        "error: device refused SYSTEM_STATE_IDLE (status 2): the microscope still reports an error after the idle request",
    );
    s.update_faults(|f| f.error_state = false);
    assert_eq!(run_json(&s, &["idle"]), r#"{"state":"idle","code":0}"#);
}

#[test]
fn the_live_port_by_mistake_says_the_command_port_is_one_below() {
    let s = sim(small());
    let live = s.live_addr().to_string();
    let out = run(&["--addr", &live, "--timeout", "0.3", "state"]);
    expect_error(&out, 4, "error: timed out after 0.300 s");
    assert!(
        out.stderr.contains(&format!(
            "if {} is the live port, use --addr {}",
            s.live_addr().port(),
            s.addr()
        )),
        "{out:?}"
    );
    // A microscope that answers, but not this request, gets no such hint.
    let s = sim(small().faults(Faults {
        never_answer: [CommandCode::FILTER_POSITION_GET].into(),
        ..Faults::default()
    }));
    let addr = s.addr().to_string();
    let out = run(&["--addr", &addr, "--timeout", "0.3", "filter", "2"]);
    expect_error(&out, 4, "error: timed out");
    assert!(!out.stderr.contains("live port"), "{out:?}");
}

#[test]
fn counts_are_singular_for_one_and_events_carry_plain_words() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/Snapshot.txt");
    let out = run(&[
        "--addr",
        "127.0.0.1:9",
        "workflow",
        "check",
        snapshot.to_str().unwrap(),
    ]);
    assert!(out.stdout.contains("a valid workflow (1 plane)"), "{out:?}");
    // One event in a watch, human and JSON.
    let stop = Message::new(CommandCode::STAGE_MOTION_STOPPED)
        .with_int32_data0(1)
        .with_status(1)
        .with_double_data(7.5);
    let (child, line, reader) = spawn_sim(&["--addr", &addr, "watch", "--for", "1"]);
    assert!(line.starts_with("Watching events"), "{line}");
    s.broadcast(stop);
    let out = child.finish();
    reader.join().unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let mut child = ChildGuard::spawn(&["--addr", &addr, "watch", "--for", "1"]);
    let wf = flamingo_client::devices::Workflow::load(&snapshot).unwrap();
    let c = client(&s);
    let deadline = Instant::now() + RUN_LIMIT;
    while child.is_running() && Instant::now() < deadline {
        c.workflows()
            .start(&wf)
            .unwrap()
            .wait(Duration::from_secs(10))
            .unwrap();
    }
    let out = child.finish();
    assert!(
        out.stdout
            .contains("stack complete: 1 of 1 image, 0 errors"),
        "{out:?}"
    );
    let mut child = ChildGuard::spawn(&["--addr", &addr, "--json", "watch", "--for", "1"]);
    while child.is_running() && Instant::now() < deadline {
        c.workflows()
            .start(&wf)
            .unwrap()
            .wait(Duration::from_secs(10))
            .unwrap();
    }
    let out = child.finish();
    c.close();
    let progress = out
        .stdout
        .lines()
        .find(|l| json_get(l, "event").as_deref() == Some("gauge_value"))
        .unwrap_or_else(|| panic!("no progress event: {out:?}"));
    assert_eq!(json_get(progress, "what").as_deref(), Some("progress"));
    for l in out.stdout.lines() {
        assert!(json_get(l, "what").is_some(), "{l}");
    }
}

// ------------------------------------------------------------ progress

#[test]
fn live_for_a_duration() {
    let s = sim(small().live_fps(100.0));
    let line = run_json(&s, &["live", "--for", "0.5"]);
    assert!(json_f64(&line, "frames") >= 2.0, "{line}");
    assert!(json_f64(&line, "fps") > 0.0, "{line}");
    assert!(!s.live_view_on());
}

#[test]
fn watch_all_prints_every_tick() {
    let s = sim(small());
    let addr = s.addr().to_string();
    let mut child = ChildGuard::spawn(&["--addr", &addr, "watch", "--for", "1", "--all"]);
    let c = client(&s);
    let wf = flamingo_client::devices::Workflow::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/Snapshot.txt"),
    )
    .unwrap();
    // Keep running workflows until the watch ends, so some land inside its
    // window whenever it subscribes.
    let deadline = Instant::now() + RUN_LIMIT;
    while child.is_running() && Instant::now() < deadline {
        c.workflows()
            .start(&wf)
            .unwrap()
            .wait(Duration::from_secs(10))
            .unwrap();
    }
    let out = child.finish();
    assert_eq!(out.code, 0, "{out:?}");
    // Not a terminal: one line per event, as before.
    assert!(out.stdout.contains("progress 1/1"), "{out:?}");
    assert!(!out.stdout.contains('\r'), "{out:?}");
    c.close();
}

// ------------------------------------------------------------ sim options

/// Starts `flamingo sim ARGS`, returns it and its first stdout line.
fn spawn_sim(args: &[&str]) -> (ChildGuard, String, JoinHandle<()>) {
    let (child, stdout) = ChildGuard::spawn_with_stdout(args);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let mut r = BufReader::new(stdout);
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep the pipe open (and drained) until the child ends.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(RUN_LIMIT)
        .expect("the simulator prints its address");
    (child, line, reader)
}

#[test]
fn sim_options_and_json_address() {
    let (child, line, reader) = spawn_sim(&[
        "sim",
        "--json",
        "--port",
        "0",
        "--image-size",
        "32x16",
        "--fault",
        "never-answer=SYSTEM_STATE_GET",
        "--fault",
        "status=STAGE_POSITION_SET:2",
    ]);
    let addr = json_get(line.trim(), "addr").unwrap_or_else(|| panic!("{line}"));
    assert!(json_get(line.trim(), "live_addr").is_some(), "{line}");
    let out = run(&["--addr", &addr, "--json", "image-size"]);
    assert_eq!(out.stdout.trim(), r#"{"width":32,"height":16}"#);
    let out = run(&["--addr", &addr, "--timeout", "0.3", "state"]);
    expect_error(&out, 4, "error: timed out");
    let out = run(&["--addr", &addr, "move", "--axis", "x", "--to", "5"]);
    expect_error(
        &out,
        6,
        "error: device refused STAGE_POSITION_SET (status 2)",
    );
    drop(child);
    reader.join().unwrap();
}

#[test]
fn bad_sim_options_exit_2() {
    for args in [
        &["sim", "--fault", "nope"][..],
        &["sim", "--image-size", "big"],
        &["sim", "--fps", "0"],
        &["sim", "--fault", "delay=STAGE_HALT"],
    ] {
        let out = run(args);
        expect_error(&out, 2, "error: invalid argument: ");
    }
}

// ------------------------------------------------------------ demo

#[test]
fn demo_speaks_plain_words() {
    let out = run(&["demo"]);
    assert_eq!(out.code, 0, "{out:?}");
    for code_name in [
        "STAGE_", "CAMERA_", "SYSTEM_", "UI_", "LASER_", "COMMON_", "0x",
    ] {
        assert!(
            !out.stdout.contains(code_name),
            "{code_name} in {}",
            out.stdout
        );
    }
    // Each heading comes before its result.
    let heading = out.stdout.find("Workflow ZStack.txt").unwrap();
    let result = out.stdout.find("Workflow completed").unwrap();
    assert!(heading < result, "{}", out.stdout);
}

// ------------------------------------------------------------ Ctrl-C

#[cfg(unix)]
mod interrupt {
    use super::*;

    fn sigint(child: &ChildGuard) {
        let status = Command::new("kill")
            .args(["-INT", &child.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    #[test]
    fn sigint_during_workflow_wait_stops_the_workflow() {
        let s = sim(small().plane_interval(Duration::from_millis(20)));
        let addr = s.addr().to_string();
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ZStack.txt");
        let child = ChildGuard::spawn(&[
            "--addr",
            &addr,
            "workflow",
            file.to_str().unwrap(),
            "--wait",
        ]);
        wait_until("the workflow to run", || s.system_state() == 1);
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, cli_interrupt::EXIT_INTERRUPTED, "{out:?}");
        assert!(
            out.stderr.contains("interrupted: stopped the workflow"),
            "{out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
        // The simulator is idle again, and a move is accepted (not "busy").
        assert_eq!(s.system_state(), 0);
        assert_eq!(s.counters().workflows_stopped, 1);
        run_json(&s, &["move", "--axis", "z", "--to", "20", "--wait"]);
    }

    #[test]
    fn sigint_during_move_wait_halts_the_stage() {
        let s = sim(slow_stage());
        let addr = s.addr().to_string();
        let child = ChildGuard::spawn(&[
            "--addr", &addr, "--json", "move", "--axis", "x", "--to", "14", "--wait",
        ]);
        wait_until("the stage to move", || s.stage_moving());
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, 130, "{out:?}");
        let line = out.stderr.trim();
        assert!(
            json_get(line, "error")
                .unwrap()
                .starts_with("interrupted: halted the stage"),
            "{out:?}"
        );
        assert_eq!(json_f64(line, "exit_code"), 130.0);
        wait_until("the stage to stop", || !s.stage_moving());
        let x = s.stage_positions()[0];
        assert!(x < 14.0, "the move was not halted: x = {x}");
        assert_eq!(s.system_state(), 0);
    }

    #[test]
    fn sigint_during_live_stops_live_view() {
        let s = sim(small().live_fps(50.0));
        let addr = s.addr().to_string();
        let child = ChildGuard::spawn(&["--addr", &addr, "live", "--for", "60"]);
        wait_until("live view", || s.live_view_on());
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, 130, "{out:?}");
        assert!(
            out.stderr.contains("interrupted: stopped live view"),
            "{out:?}"
        );
        assert!(!s.live_view_on());
    }

    #[test]
    fn sigint_during_snapshot_abandons_it() {
        let s = sim(small().faults(Faults {
            delay: [(CommandCode::CAMERA_SNAPSHOT_GET, Duration::from_secs(60))].into(),
            ..Faults::default()
        }));
        let addr = s.addr().to_string();
        let dir = TempDir::new("int-snap");
        let file = dir.path("snap.tif");
        let child =
            ChildGuard::spawn(&["--addr", &addr, "snapshot", "--out", file.to_str().unwrap()]);
        wait_until("the snapshot request", || {
            s.received_codes()
                .contains(&CommandCode::CAMERA_SNAPSHOT_GET)
        });
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, 130, "{out:?}");
        assert!(
            out.stderr.contains("interrupted: abandoned the snapshot"),
            "{out:?}"
        );
        assert!(!file.exists());
    }

    #[test]
    fn sigint_ends_a_watch() {
        let s = sim(small());
        let addr = s.addr().to_string();
        // The first line is printed once the watch listens (and handles Ctrl-C).
        let (child, line, reader) = spawn_sim(&["--addr", &addr, "watch", "--for", "60"]);
        assert!(line.starts_with("Watching events"), "{line}");
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, 130, "{out:?}");
        reader.join().unwrap();
    }

    #[test]
    fn sigint_stops_the_simulator() {
        let (child, line, reader) = spawn_sim(&["sim", "--port", "0"]);
        assert!(line.starts_with("listening on "), "{line}");
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, 130, "{out:?}");
        reader.join().unwrap();
    }

    #[test]
    fn sigint_while_homing_halts_the_stage() {
        let s = sim(slow_stage().start_position([2.0, 10.0, 15.0, 0.0]));
        let addr = s.addr().to_string();
        let child = ChildGuard::spawn(&["--addr", &addr, "home", "--yes"]);
        wait_until("the stage to move", || s.stage_moving());
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, 130, "{out:?}");
        assert!(
            out.stderr
                .contains("interrupted: halted the stage (homing was stopped)"),
            "{out:?}"
        );
        wait_until("the stage to stop", || !s.stage_moving());
        assert!(s.stage_positions()[0] < 8.032, "{:?}", s.stage_positions());
    }

    #[test]
    fn the_simulator_logs_what_it_serves_at_v_and_says_so_when_stopped() {
        let (mut child, stdout) = ChildGuard::spawn_with_stdout(&["sim", "--port", "0", "-v"]);
        let err = child.child.stderr.take().expect("stderr");
        child.readers.push(std::thread::spawn(Vec::new));
        child
            .readers
            .push(std::thread::spawn(move || read_all(err)));
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        let out = run(&["--addr", &addr, "position"]);
        assert_eq!(out.code, 0, "{out:?}");
        sigint(&child);
        let out = child.finish();
        assert_eq!(out.code, 130, "{out:?}");
        for want in [
            "sim: client 1 connected from 127.0.0.1:",
            "sim: client 1: STAGE_POSITION_GET (int32Data0 3)",
            "sim: client 1 disconnected",
            "interrupted: stopped the simulator after serving 1 client connection, 4 commands and 0 live images",
        ] {
            assert!(out.stderr.contains(want), "{want}: {out:?}");
        }
    }
}
