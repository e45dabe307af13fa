//! A connection and what hangs on it: the client, the event subscription,
//! the live worker, the operations in flight, and the hook that wakes the
//! UI when the library has something for it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use eframe::egui;
use flamingo_client::devices::{Op, WorkflowRun};
use flamingo_client::sim::{SimConfig, Simulator};
use flamingo_client::{CallbackId, Client, ClientConfig, ReconnectPolicy, Subscription};

use crate::live::LiveWorker;
use crate::model::Model;

/// What a completed operation does to the model.
pub type Apply = Box<dyn FnOnce(&mut Model) + Send>;

/// An operation in flight.
pub struct Pend {
    /// What it does, for errors.
    pub what: String,
    /// The operation; its outcome updates the model.
    pub op: Op<Apply>,
    /// When it was submitted.
    pub since: Instant,
    /// The stage position query (one is in flight at a time).
    pub positions: bool,
}

/// While any operation is in flight, the UI looks at it this often even if
/// nothing wakes it. `None`: the library's waker (`Client::set_waker`) wakes
/// the UI whenever an operation completes or an event is queued, so no
/// polling is needed.
pub const POLL_WHILE_PENDING: Option<Duration> = None;

/// Makes the library wake the UI: the library calls the waker on its own
/// thread whenever an operation completes or an event is queued, and
/// `ctx.request_repaint()` is cheap and callable from any thread.
pub fn install_waker(client: &Client, ctx: &egui::Context) -> flamingo_client::Result<Waker> {
    let ctx = ctx.clone();
    client.set_waker(Some(std::sync::Arc::new(move || ctx.request_repaint())));
    Ok(Waker(None))
}

/// The installed wake-up hook (removed with the session).
pub struct Waker(pub Option<CallbackId>);

/// A connected session.
pub struct Session {
    /// The client.
    pub client: Client,
    /// Every event, drained each frame.
    pub events: Subscription,
    /// The live view.
    pub live: LiveWorker,
    /// The running workflow, if any.
    pub run: Option<Box<WorkflowRun>>,
    /// The workflow stop in flight.
    pub stopping: bool,
    /// Operations in flight.
    pub pending: Vec<Pend>,
    /// The wake-up hook.
    pub waker: Waker,
    /// The embedded simulator, when the viewer started it.
    pub sim: Option<Arc<Simulator>>,
    /// When the stage positions were last queried.
    pub last_position_query: Instant,
}

impl Session {
    /// Ends the session without blocking the UI: closing the client joins
    /// its threads and stopping the simulator joins its own, so both happen
    /// on a thread of their own.
    pub fn close_in_background(self) -> JoinHandle<()> {
        let Session {
            client,
            events,
            live,
            run,
            pending,
            waker,
            sim,
            ..
        } = self;
        let live = live.shut_down();
        std::thread::spawn(move || {
            if let Some(h) = live {
                let _ = h.join();
            }
            if let Some(id) = waker.0 {
                client.remove_callback(id);
            }
            drop((events, run, pending));
            client.close();
            drop(client);
            drop(sim);
        })
    }
}

/// What the connecting thread hands back.
pub struct Connected {
    /// The client.
    pub client: Client,
    /// The embedded simulator, if started.
    pub sim: Option<Arc<Simulator>>,
    /// The wake-up hook (installing it starts the library's dispatcher
    /// thread, so it is done here, not on the UI thread).
    pub waker: Waker,
    /// Every event.
    pub events: Subscription,
}

/// Where the embedded simulator is started: small frames at 30 frames per
/// second, a stage that moves visibly, workflows at 100 planes per second.
pub fn sim_config() -> SimConfig {
    SimConfig::default()
        .image_size(512, 512)
        .live_fps(30.0)
        .stage_velocity(2.0, 90.0)
        .plane_interval(Duration::from_millis(10))
}

/// The client configuration: reconnect forever, quickly at first.
pub fn client_config() -> ClientConfig {
    ClientConfig::default().reconnect(
        ReconnectPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(2)),
    )
}

/// Connects (and starts the simulator first if `addr` is `None`) on a
/// thread; the outcome arrives on the returned channel, and the UI is woken.
pub fn connect_in_background(
    addr: Option<String>,
    ctx: egui::Context,
) -> Receiver<Result<Connected, String>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let r = (|| {
            let (addr, sim) = match addr {
                Some(a) => (a, None),
                None => {
                    let sim = Simulator::start(sim_config())
                        .map_err(|e| format!("cannot start the simulator: {e}"))?;
                    (sim.addr().to_string(), Some(Arc::new(sim)))
                }
            };
            let client = Client::connect(&addr, client_config()).map_err(|e| e.to_string())?;
            let events = client.subscribe();
            let waker = install_waker(&client, &ctx).map_err(|e| e.to_string())?;
            Ok(Connected {
                client,
                sim,
                waker,
                events,
            })
        })();
        let _ = tx.send(r);
        ctx.request_repaint();
    });
    rx
}
