//! The instrument stand-in: minimal loopback servers in a child process.
//!
//! The benchmark re-executes itself with `--serve`; the child binds four
//! listeners on 127.0.0.1 (ephemeral ports), prints them on one stdout line
//! and serves every connection on its own thread until its stdin closes.
//! Client and server therefore never share a process (an allocator, a
//! scheduler group, a page cache of the same binary's threads), as with a
//! real instrument. The parent holds the child in a [`ServerProcess`] guard
//! that kills and reaps it when dropped; if the parent dies without running
//! destructors, the child sees its stdin reach end-of-file and exits too.
//!
//! Every server does as little as possible, so the figures are dominated by
//! the client side:
//! - echo: writes back every whole 128-byte message that one read returned,
//!   in one write (a reply carries the request's code, so a request with a
//!   code outside the catalogue is matched by code, FIFO);
//! - events: waits for a [`BENCH_START`] request (int32Data0 = count,
//!   int32Data1 = gap in ns between writes, 0 = flood; int32Data2 = events
//!   per write), acknowledges it by echoing it, then writes `count`
//!   `UI_SET_GAUGE_VALUE` events, each stamped in doubleData with
//!   [`sys::clock_ns`] just before its write, then one [`BENCH_END`] event
//!   whose doubleData is the time the writes took (ns);
//! - frames: writes a pre-rendered 2048 x 2048 u16 frame with a fresh live
//!   header over and over until the peer goes away;
//! - silent: a live port with live view stopped (accepts, sends nothing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flamingo_client::codec::{CommandCode, LiveHeader, Message, LIVE_HEADER_LEN, MESSAGE_LEN};

use crate::sys;

/// Starts an event run (a request: the server echoes it as the reply).
pub const BENCH_START: CommandCode = CommandCode(0x7701);
/// Ends an event run (an event: no request waits for this code).
pub const BENCH_END: CommandCode = CommandCode(0x7702);
/// Frame size of the live benchmark.
pub const FRAME_W: u32 = 2048;
/// Frame size of the live benchmark.
pub const FRAME_H: u32 = 2048;

/// What the event server is asked to send.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub count: u32,
    /// Time between writes (zero: as fast as the socket takes them).
    pub gap: Duration,
    /// Events per write: 1 as the instrument does; more in a flood, so the
    /// server's own system calls do not cap the rate the client is offered.
    pub per_write: u32,
}

impl Pace {
    /// The request that starts the run.
    pub fn start_message(&self) -> Message {
        Message::new(BENCH_START)
            .with_int32_data0(self.count as i32)
            .with_int32_data1(self.gap.as_nanos() as i32)
            .with_int32_data2(self.per_write as i32)
    }
}

/// The child's listening addresses.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub echo: SocketAddr,
    pub events: SocketAddr,
    pub frames: SocketAddr,
    pub silent: SocketAddr,
}

/// The server child process, killed and reaped when dropped.
pub struct ServerProcess {
    child: Child,
    pub ports: Ports,
}

impl ServerProcess {
    /// Starts `<this executable> --serve --base <clock base> [--cpu N]` and
    /// reads its ports.
    pub fn start(clock_base: u64, cpu: Option<usize>) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("path of this executable: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["--serve", "--base", &clock_base.to_string()]);
        if let Some(c) = cpu {
            cmd.args(["--cpu", &c.to_string()]);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the server process: {e}"))?;
        // From here on the guard owns the child: any early return reaps it.
        let mut guard = ServerProcess {
            child,
            ports: Ports {
                echo: ([127, 0, 0, 1], 0).into(),
                events: ([127, 0, 0, 1], 0).into(),
                frames: ([127, 0, 0, 1], 0).into(),
                silent: ([127, 0, 0, 1], 0).into(),
            },
        };
        let out = guard.child.stdout.take().ok_or("no stdout of the server")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| format!("read the server's ports: {e}"))?;
        let field = |name: &str| -> Result<SocketAddr, String> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("the server printed no {name} port: {line:?}"))?
                .parse()
                .map_err(|e| format!("bad {name} address: {e}"))
        };
        guard.ports = Ports {
            echo: field("echo")?,
            events: field("events")?,
            frames: field("frames")?,
            silent: field("silent")?,
        };
        Ok(guard)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's entry point (`--serve --base N [--cpu C]`): never returns.
pub fn serve(args: &[String]) -> ! {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--base" => {
                let base = it.next().and_then(|v| v.parse().ok());
                sys::set_clock_base(base.expect("--base needs the clock base in ns"));
            }
            "--cpu" => {
                let cpu: usize = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--cpu needs a CPU number");
                // Before any thread exists: every server thread inherits it.
                if !sys::pin(None, Some(&[cpu])) {
                    eprintln!("bench server: could not pin to CPU {cpu}");
                }
            }
            other => {
                eprintln!("bench server: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let (echo, events, frames, silent) = (bind(), bind(), bind(), bind());
    let addr = |l: &TcpListener| l.local_addr().expect("local address");
    println!(
        "PORTS echo={} events={} frames={} silent={}",
        addr(&echo),
        addr(&events),
        addr(&frames),
        addr(&silent)
    );
    let _ = std::io::stdout().flush();
    let pixels = render_frame();
    accept_loop(echo, "srv-echo", Arc::new(serve_echo));
    accept_loop(events, "srv-events", Arc::new(serve_events));
    accept_loop(
        frames,
        "srv-frames",
        Arc::new(move |s| serve_frames(s, &pixels)),
    );
    accept_loop(silent, "srv-silent", Arc::new(serve_silent));
    // The parent holds our stdin; end-of-file means it is gone.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

type Handler = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// Accepts connections forever, each served on its own thread.
fn accept_loop(listener: TcpListener, name: &'static str, handler: Handler) {
    std::thread::Builder::new()
        .name(format!("{name}-accept"))
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let h = handler.clone();
                let _ = std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || h(stream));
            }
        })
        .expect("spawn an accept thread");
}

fn serve_echo(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        match s.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let whole = filled / MESSAGE_LEN * MESSAGE_LEN;
        if whole > 0 {
            if s.write_all(&buf[..whole]).is_err() {
                return;
            }
            buf.copy_within(whole..filled, 0);
            filled -= whole;
        }
    }
}

/// Sleeps until `deadline`. A sleep overshoots by the timer slack (~50-60
/// µs on Linux), less than the 100 µs gap, so the schedule holds; the
/// server never spins, which would take a CPU from the client on a small
/// machine (a real instrument is another computer).
fn wait_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

fn serve_events(mut s: TcpStream) {
    let mut req = [0u8; MESSAGE_LEN];
    if s.read_exact(&mut req).is_err() {
        return;
    }
    let Ok(start) = Message::decode(&req) else {
        return;
    };
    if start.code != BENCH_START || s.write_all(&req).is_err() {
        return;
    }
    let count = start.int32_data0.max(0) as u32;
    let gap = Duration::from_nanos(start.int32_data1.max(0) as u64);
    let per_write = start.int32_data2.clamp(1, 512) as u32;
    let mut bytes = vec![0u8; per_write as usize * MESSAGE_LEN];
    let t0 = Instant::now();
    let mut i = 0;
    while i < count {
        // Paced events follow an absolute schedule, so a late wake-up does
        // not lower the rate: the next event simply leaves sooner.
        if !gap.is_zero() {
            wait_until(t0 + gap * (i / per_write));
        }
        let n = per_write.min(count - i);
        let stamp = sys::clock_ns() as f64;
        for (k, chunk) in bytes
            .chunks_exact_mut(MESSAGE_LEN)
            .take(n as usize)
            .enumerate()
        {
            Message::new(CommandCode::UI_SET_GAUGE_VALUE)
                .with_int32_data0((i + k as u32) as i32)
                .with_int32_data1(count as i32)
                .with_double_data(stamp)
                .encode(chunk.try_into().expect("128 bytes"));
        }
        if s.write_all(&bytes[..n as usize * MESSAGE_LEN]).is_err() {
            return;
        }
        i += n;
    }
    let took = t0.elapsed().as_nanos() as f64;
    let end = Message::new(BENCH_END)
        .with_int32_data0(count as i32)
        .with_double_data(took);
    if s.write_all(&end.to_bytes()).is_err() {
        return;
    }
    serve_silent(s);
}

fn render_frame() -> Arc<[u8]> {
    let mut pixels = vec![0u8; (FRAME_W * FRAME_H * 2) as usize];
    for (i, px) in pixels.chunks_exact_mut(2).enumerate() {
        let v = ((i % 4093) as u16).wrapping_mul(16);
        px.copy_from_slice(&v.to_le_bytes());
    }
    pixels.into()
}

fn serve_frames(mut s: TcpStream, pixels: &[u8]) {
    let start = Instant::now();
    let mut head = [0u8; LIVE_HEADER_LEN];
    let mut n = 0u32;
    loop {
        n = n.wrapping_add(1);
        LiveHeader {
            image_size: pixels.len() as u32,
            width: FRAME_W,
            height: FRAME_H,
            scale_min: 0,
            scale_max: 65535,
            timestamp_ms: start.elapsed().as_millis() as u32,
            frame_number: n,
            exposure_us: 1000,
            reserved: [0, 0],
        }
        .encode(&mut head);
        if s.write_all(&head).is_err() || s.write_all(pixels).is_err() {
            return;
        }
    }
}

fn serve_silent(mut s: TcpStream) {
    let mut sink = [0u8; 256];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw;

    /// A listener on an ephemeral port whose one connection `serve` handles.
    fn one(serve: fn(TcpStream)) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            serve(s);
        });
        (addr, h)
    }

    #[test]
    fn echo_returns_every_message() {
        let (addr, h) = one(serve_echo);
        let mut pp = raw::PingPong::new(addr);
        for _ in 0..100 {
            pp.once();
        }
        drop(pp);
        h.join().unwrap();
    }

    #[test]
    fn busy_polling_client_gets_every_reply() {
        let (addr, h) = one(serve_echo);
        let mut busy = raw::BusyPingPong::new(addr);
        for _ in 0..100 {
            busy.once();
        }
        drop(busy);
        h.join().unwrap();
    }

    #[test]
    fn event_server_sends_the_count_asked_for_then_the_end() {
        sys::set_clock_base(sys::epoch_ns());
        let (addr, h) = one(serve_events);
        let pace = Pace {
            count: 1000,
            gap: Duration::from_micros(20),
            per_write: 16,
        };
        let got = raw::events(addr, pace);
        assert_eq!(got.lat.len(), 1000);
        assert!(got.offered_ns.is_finite() && got.offered_ns > 0.0);
        // 1000 events 16 per write, 20 µs apart: at least 62 gaps.
        assert!(got.offered_ns >= 62.0 * 20_000.0, "{}", got.offered_ns);
        h.join().unwrap();
    }
}
