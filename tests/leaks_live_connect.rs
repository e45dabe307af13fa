//! 200 connect/close cycles with frames streaming leak no threads, sockets or
//! buffers. The only test in this binary, so the process-wide thread and file
//! descriptor counts below are not disturbed by other tests.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use flamingo_client::codec::LiveHeader;
use flamingo_client::live::{LiveConfig, LiveStream};

const WAIT: Duration = Duration::from_secs(20);
const CYCLES: u32 = 200;

/// (threads, open file descriptors) of this process, where the OS tells us.
fn resources() -> Option<(usize, usize)> {
    #[cfg(target_os = "linux")]
    {
        let count = |dir: &str| std::fs::read_dir(dir).ok().map(|d| d.count());
        Some((count("/proc/self/task")?, count("/proc/self/fd")?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

fn frame(n: u32) -> Vec<u8> {
    let (w, h) = (32u32, 16u32);
    let mut out = LiveHeader {
        image_size: w * h * 2,
        width: w,
        height: h,
        frame_number: n,
        ..LiveHeader::default()
    }
    .to_bytes()
    .to_vec();
    out.extend((0..w * h).flat_map(|i| ((i ^ n) as u16).to_le_bytes()));
    out
}

#[test]
fn connect_close_cycles_leak_nothing() {
    let before = resources();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The server streams frames on every connection until the client goes away.
    let server = thread::spawn(move || {
        let mut writers: Vec<JoinHandle<()>> = Vec::new();
        for conn in listener.incoming().take(CYCLES as usize) {
            let mut conn = conn.unwrap();
            writers.push(thread::spawn(move || {
                let mut n = 0;
                loop {
                    n += 1;
                    if conn.write_all(&frame(n)).is_err() {
                        break;
                    }
                }
            }));
        }
        for w in writers {
            w.join().unwrap();
        }
    });
    let (done_tx, done_rx) = unbounded();
    let client = thread::spawn(move || {
        for cycle in 0..CYCLES {
            let live = LiveStream::connect(addr, LiveConfig::default(), Instant::now() + WAIT)
                .expect("connect");
            let f = live.next_frame(WAIT).expect("a frame");
            assert_eq!(f.width(), 32);
            let stats = live.stats();
            assert!(stats.buffers_allocated <= 8, "{stats:?}");
            if cycle % 2 == 0 {
                live.close();
                assert!(live.is_finished() && !live.is_connected());
                assert!(live.error().is_none());
            }
            drop(live); // closes (again) and joins
                        // A frame may outlive its stream.
            assert_eq!(f.pixels().len(), 32 * 16);
        }
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("200 cycles finish");
    client.join().unwrap();
    server.join().unwrap();
    // Nothing of ours is left listening or connected.
    assert!(TcpStream::connect(addr).is_err(), "listener closed");
    if let (Some(before), Some(after)) = (before, resources()) {
        assert_eq!(after, before, "(threads, fds) before and after");
    }
}
