//! State shared by every simulator thread, the connection registry, thread
//! bookkeeping and the shutdown signal.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use super::conn::{Kind, Out};
use super::live::CameraCmd;
use super::replay::Player;
use super::stage::StageModel;
use super::state::Instrument;
use super::{Faults, Received, SimConfig, SimCounters};
use crate::codec::Message;

/// One open command connection.
pub(crate) struct ConnEntry {
    /// A clone of the socket, to shut it down from elsewhere.
    pub stream: TcpStream,
    /// The connection's writer queue; `None` once the reader ended (the
    /// writer then drains what is queued and closes the socket).
    pub tx: Option<Sender<Out>>,
}

/// The recorded messages: the most recent `SimConfig::record_limit`.
#[derive(Default)]
pub(crate) struct ReceivedLog {
    /// The messages, each with a flag: fully handled (replies queued, state
    /// changed), which is when `wait_for_received` may return it.
    pub items: VecDeque<(Received, bool)>,
    /// Messages ever recorded (the sequence number of the next one).
    pub total: u64,
}

impl ReceivedLog {
    /// Sequence number of `items[0]`.
    pub(crate) fn first_seq(&self) -> u64 {
        self.total - self.items.len() as u64
    }
}

pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub start: Instant,
    pub faults: Mutex<Faults>,
    pub inst: Mutex<Instrument>,
    pub stage: Mutex<StageModel>,
    pub stage_wake: Sender<()>,
    pub camera: Sender<CameraCmd>,
    pub received: Mutex<ReceivedLog>,
    /// Notified whenever a message is recorded.
    pub received_cv: Condvar,
    pub counters: Mutex<SimCounters>,
    pub conns: Mutex<HashMap<u64, ConnEntry>>,
    /// A clone of the current live client's socket.
    pub live_stream: Mutex<Option<TcpStream>>,
    pub threads: Mutex<Vec<JoinHandle<()>>>,
    shutting_down: AtomicBool,
    /// Never receives a value; disconnects when the simulator stops.
    pub shutdown_rx: Receiver<()>,
    /// Set when the simulator serves a recording instead of its model.
    pub replay: Option<Arc<Player>>,
}

impl Shared {
    pub(crate) fn new(
        cfg: SimConfig,
        shutdown_rx: Receiver<()>,
        stage_wake: Sender<()>,
        camera: Sender<CameraCmd>,
        replay: Option<Arc<Player>>,
    ) -> Shared {
        Shared {
            faults: Mutex::new(cfg.faults.clone()),
            inst: Mutex::new(Instrument::new(&cfg)),
            stage: Mutex::new(StageModel::new(&cfg)),
            cfg,
            start: Instant::now(),
            stage_wake,
            camera,
            received: Mutex::new(ReceivedLog::default()),
            received_cv: Condvar::new(),
            counters: Mutex::new(SimCounters::default()),
            conns: Mutex::new(HashMap::new()),
            live_stream: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            shutdown_rx,
            replay,
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Marks the simulator as stopping; from now on no thread is spawned and
    /// no connection registered.
    pub(crate) fn begin_shutdown(&self) {
        // Taking the locks orders this store with spawn/register. Same order
        // as `start_connection` (connections, then threads), or a stop racing
        // an accept deadlocks.
        let _c = self.conns.lock();
        let _t = self.threads.lock();
        let _l = self.live_stream.lock();
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Spawns a thread whose handle is joined when the simulator stops.
    /// Refused (returns `Ok(false)`) once the simulator is stopping.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        name: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> io::Result<bool> {
        let mut threads = self.threads.lock();
        if self.is_shutting_down() {
            return Ok(false);
        }
        threads.retain(|h| !h.is_finished());
        let h = std::thread::Builder::new()
            .name(format!("flamingo-sim-{name}"))
            .spawn(f)?;
        threads.push(h);
        Ok(true)
    }

    /// Updates the counters.
    pub(crate) fn count(&self, f: impl FnOnce(&mut SimCounters)) {
        f(&mut self.counters.lock());
    }

    /// Counts one injected fault of the kind `f` increments.
    pub(crate) fn count_fault(&self, f: impl FnOnce(&mut SimCounters)) {
        let mut c = self.counters.lock();
        c.faults_injected += 1;
        f(&mut c);
    }

    /// Queues an unsolicited message to every connected command client.
    /// Returns how many clients it was queued for.
    pub(crate) fn broadcast(&self, msg: Message) -> usize {
        self.broadcast_with(msg, None)
    }

    pub(crate) fn broadcast_with(&self, msg: Message, data: Option<Arc<Vec<u8>>>) -> usize {
        if self.faults.lock().drop_events.contains(&msg.code) {
            log::debug!("sim: event {} lost (drop_events fault)", msg.code);
            self.count_fault(|_| {});
            return 0;
        }
        log::debug!("sim: event {msg:?}");
        let now = Instant::now();
        let conns = self.conns.lock();
        let mut n = 0;
        for tx in conns.values().filter_map(|c| c.tx.as_ref()) {
            let out = Out {
                msg,
                data: data.clone(),
                due: now,
                kind: Kind::Event,
            };
            if tx.send(out).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// The reader of connection `id` ended: no more messages are queued for it.
    pub(crate) fn reader_done(&self, id: u64) {
        if let Some(c) = self.conns.lock().get_mut(&id) {
            c.tx = None;
        }
    }

    /// Removes a connection from the registry and shuts its socket down.
    pub(crate) fn unregister(&self, id: u64) {
        if let Some(c) = self.conns.lock().remove(&id) {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }

    /// Waits until `deadline`; false if the simulator is stopping.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> bool {
        select! {
            recv(self.shutdown_rx) -> _ => false,
            recv(crossbeam_channel::at(deadline)) -> _ => !self.is_shutting_down(),
        }
    }

    /// Waits for `d`; false if the simulator is stopping.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        self.sleep_until(Instant::now() + d)
    }

    /// Records a received message before it is handled, so that it is in
    /// `received()` before its reply can be read. Returns its sequence number.
    pub(crate) fn record(&self, r: Received) -> u64 {
        let mut log = self.received.lock();
        let seq = log.total;
        log.total += 1;
        if self.cfg.record_limit > 0 {
            while log.items.len() >= self.cfg.record_limit {
                log.items.pop_front();
            }
            log.items.push_back((r, false));
        }
        seq
    }

    /// Marks message `seq` as handled and wakes `wait_for_received`.
    pub(crate) fn handled(&self, seq: u64) {
        let mut log = self.received.lock();
        let first = log.first_seq();
        if let Some(item) = seq
            .checked_sub(first)
            .and_then(|i| log.items.get_mut(i as usize))
        {
            item.1 = true;
        }
        drop(log);
        self.received_cv.notify_all();
    }

    /// Milliseconds since the simulator started (wrapping).
    pub(crate) fn millis(&self) -> u32 {
        self.start.elapsed().as_millis() as u32
    }
}
