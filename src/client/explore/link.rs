//! An in-memory link: two bounded byte pipes (client to instrument and
//! back) and the write side the core sees ([`Wire`]), so that writes block,
//! complete part-way and fail exactly where a socket's would.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use super::super::deadline::Deadline;
use super::super::sync::{Condvar, Mutex};
use super::super::wire::Wire;

struct PipeState {
    buf: VecDeque<u8>,
    cap: usize,
    closed: bool,
}

/// A bounded byte pipe; closing it ends reads (after what is buffered is
/// drained) and fails writes.
pub(super) struct Pipe {
    st: Mutex<PipeState>,
    cv: Condvar,
}

impl Pipe {
    pub fn new(cap: usize) -> Arc<Pipe> {
        Arc::new(Pipe {
            st: Mutex::new(PipeState {
                buf: VecDeque::new(),
                cap,
                closed: false,
            }),
            cv: Condvar::new(),
        })
    }

    pub fn close(&self) {
        let mut s = self.st.lock();
        if !s.closed {
            s.closed = true;
            self.cv.notify_all();
        }
    }

    /// Writes what fits at once.
    pub fn try_put(&self, data: &[u8]) -> io::Result<usize> {
        let mut s = self.st.lock();
        if s.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = data.len().min(s.cap - s.buf.len());
        s.buf.extend(&data[..n]);
        if n > 0 {
            self.cv.notify_all();
        }
        Ok(n)
    }

    /// Writes all of `data` by `deadline` (adding to `written`), waiting for
    /// room as a blocking socket write does.
    pub fn put_by(
        &self,
        mut data: &[u8],
        written: &mut usize,
        deadline: Deadline,
    ) -> io::Result<()> {
        let mut s = self.st.lock();
        loop {
            if s.closed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = data.len().min(s.cap - s.buf.len());
            if n > 0 {
                s.buf.extend(&data[..n]);
                *written += n;
                data = &data[n..];
                self.cv.notify_all();
            }
            if data.is_empty() {
                return Ok(());
            }
            if deadline.expired() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.cv.wait_until(&mut s, deadline.wait_slice());
        }
    }

    /// Writes all of `data` as one piece (an instrument's message is never
    /// interleaved with another's), waiting for room.
    pub fn put_whole(&self, data: &[u8]) -> io::Result<()> {
        let mut s = self.st.lock();
        loop {
            if s.closed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if s.cap - s.buf.len() >= data.len() {
                s.buf.extend(data);
                self.cv.notify_all();
                return Ok(());
            }
            self.cv.wait(&mut s);
        }
    }

    /// Reads what is there (at most `max`), waiting for something; `Ok(0)`
    /// once closed and drained.
    fn get(&self, out: &mut [u8], max: usize) -> io::Result<usize> {
        let mut s = self.st.lock();
        loop {
            if !s.buf.is_empty() {
                let n = out.len().min(s.buf.len()).min(max);
                for (o, b) in out.iter_mut().zip(s.buf.drain(..n)) {
                    *o = b;
                }
                self.cv.notify_all();
                return Ok(n);
            }
            if s.closed {
                return Ok(0);
            }
            self.cv.wait(&mut s);
        }
    }
}

/// The reading end of a pipe, at most `max` bytes per read.
pub(super) struct Reader {
    pub pipe: Arc<Pipe>,
    pub max: usize,
}

impl io::Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.pipe.get(out, self.max)
    }
}

/// One link between the client and the instrument.
pub(super) struct Link {
    pub id: u64,
    /// Client to instrument.
    pub down: Arc<Pipe>,
    /// Instrument to client.
    pub up: Arc<Pipe>,
    /// The harness broke the link (a link loss the client did not cause).
    pub cut: AtomicBool,
}

impl Link {
    pub fn new(id: u64, down_cap: usize) -> Arc<Link> {
        Arc::new(Link {
            id,
            down: Pipe::new(down_cap),
            up: Pipe::new(1 << 20),
            cut: AtomicBool::new(false),
        })
    }

    /// Breaks the link as a lost connection does.
    pub fn cut(&self) {
        self.cut.store(true, Relaxed);
        self.down.close();
        self.up.close();
    }

    pub fn was_cut(&self) -> bool {
        self.cut.load(Relaxed)
    }
}

/// The write side of a link, as the core sees it.
pub(super) struct MemWire {
    pub link: Arc<Link>,
    /// Writes that never wait are available (false: as on Windows, the
    /// sender thread writes everything).
    pub try_write: bool,
}

impl Wire for MemWire {
    fn write_by(&self, buf: &[u8], written: &mut usize, deadline: Deadline) -> io::Result<()> {
        self.link.down.put_by(buf, written, deadline)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        if !self.try_write {
            return Ok(0);
        }
        self.link.down.try_put(buf)
    }

    fn can_try_write(&self) -> bool {
        self.try_write
    }

    fn shutdown(&self) {
        self.link.down.close();
        self.link.up.close();
    }
}
