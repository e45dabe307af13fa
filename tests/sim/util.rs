//! Helpers shared by the `sim_*` tests (included with `#[path]`): a raw
//! command client over `TcpStream` + `FrameReader`, and a live-port reader.
#![allow(dead_code)]
#![cfg(feature = "sim")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use flamingo_client::codec::{
    CommandCode, Flags, FrameError, FrameReader, LiveHeader, Message, LIVE_HEADER_LEN,
};

/// Upper bound for any single wait in these tests (a failure bound only).
pub const TIMEOUT: Duration = crate::common::LONG;

/// A code outside the catalogue: the simulator echoes it.
pub const ECHO: CommandCode = crate::common::ECHO;

pub fn flagged(code: CommandCode) -> Message {
    Message::new(code).with_flags(Flags::TRIGGER_CALL_BACK)
}

pub struct Client {
    pub stream: TcpStream,
    pub reader: FrameReader,
    next_tag: i32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the simulator");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            reader: FrameReader::new(64 * 1024 * 1024),
            next_tag: 1_000_000,
        }
    }

    pub fn send(&mut self, m: Message) {
        self.stream.write_all(&m.to_bytes()).expect("send");
    }

    pub fn send_with(&mut self, m: Message, data: &[u8]) {
        let m = m.with_additional_data_len(data.len() as u32);
        let mut bytes = m.to_bytes().to_vec();
        bytes.extend_from_slice(data);
        self.stream.write_all(&bytes).expect("send");
    }

    /// Reads the next message (skipping its additional data into the void).
    pub fn recv(&mut self) -> Message {
        self.recv_frame().0
    }

    pub fn recv_frame(&mut self) -> (Message, Vec<u8>) {
        let mut data = Vec::new();
        let m = self
            .reader
            .read_frame(&mut self.stream, &mut data)
            .unwrap_or_else(|e| panic!("reading from the simulator: {e}"));
        (m, data)
    }

    pub fn try_recv(&mut self) -> Result<Message, FrameError> {
        let mut data = Vec::new();
        self.reader.read_frame(&mut self.stream, &mut data)
    }

    /// Sends a request and returns the next message (which must answer it).
    pub fn request(&mut self, m: Message) -> Message {
        self.send(m);
        let r = self.recv();
        assert_eq!(r.code, m.code, "reply code");
        r
    }

    /// Sends an echo request with a fresh tag and returns every message that
    /// arrives before its echo: proves what did (not) arrive before it.
    pub fn fence(&mut self) -> Vec<Message> {
        self.next_tag += 1;
        let tag = self.next_tag;
        self.send(flagged(ECHO).with_int32_data2(tag));
        let mut before = Vec::new();
        loop {
            let m = self.recv();
            if m.code == ECHO && m.int32_data2 == tag {
                return before;
            }
            before.push(m);
        }
    }

    /// Reads messages until one with `code` arrives; returns all read, that one last.
    pub fn recv_until(&mut self, code: CommandCode) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let m = self.recv();
            let done = m.code == code;
            out.push(m);
            if done {
                return out;
            }
        }
    }
}

/// A live-port client.
pub struct LiveClient {
    pub stream: TcpStream,
}

impl LiveClient {
    pub fn connect(addr: SocketAddr) -> LiveClient {
        let stream = TcpStream::connect(addr).expect("connect to the live port");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        LiveClient { stream }
    }

    pub fn header(&mut self) -> LiveHeader {
        let mut b = [0u8; LIVE_HEADER_LEN];
        self.stream.read_exact(&mut b).expect("live header");
        LiveHeader::decode(&b)
    }

    pub fn frame(&mut self) -> (LiveHeader, Vec<u8>) {
        let h = self.header();
        let n = h.validate(64 * 1024 * 1024).expect("valid live header");
        let mut px = vec![0u8; n];
        self.stream.read_exact(&mut px).expect("live pixels");
        (h, px)
    }

    /// True if the peer closed the connection (EOF or reset) before `TIMEOUT`.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 4096];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Polls `cond` until it holds; panics after `TIMEOUT`. For state that the
/// simulator updates asynchronously (counters) and has no message for.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
