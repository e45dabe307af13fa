//! Third adversarial round, aimed at the reader's batch window (the reader
//! marks itself busy when a read returns bytes; until its next read callers
//! queue their requests and the reader writes them: `Conn::read_returned`,
//! `Shared::end_reader_batch`, `flush_routed`). Each test names the
//! guarantee it checks. A test that carries an "OBSERVED FAILURE" comment
//! failed when it was written: it documents a bug, not a flaky test.

use crate::common::{poll_until, Instrument, Link, LONG};

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::bounded;
use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::{Client, ClientConfig};

/// A code unknown to the catalogue: replies, never broadcast.
const A: CommandCode = CommandCode(0x7721);
/// Another one, for unrelated traffic.
const B: CommandCode = CommandCode(0x7722);
/// A third, for events.
const EV: CommandCode = CommandCode(0x7723);

fn tagged(code: CommandCode, tag: i32) -> Message {
    Message::new(code).with_int32_data2(tag)
}

/// Reads and throws away everything the client writes until the link ends.
fn drain(mut link: Link) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        while link.read_discarding().is_some() {
            n += 1;
        }
        n
    })
}

std::thread_local! {
    /// The lowest and highest stack address at which this thread called
    /// the waker.
    static SPAN: Cell<(usize, usize)> = const { Cell::new((usize::MAX, 0)) };
}

/// Guarantee (the crate docs of `set_waker`: the waker is called "when an
/// operation completes or an event is queued"; memory bounded by
/// configuration): calling the waker costs a bounded amount of stack,
/// however many messages are queued. The client calls the waker after it
/// wrote a batch of plain sends; if calling the waker writes the next
/// batch, whose completion calls the waker again, the stack grows by a
/// few frames per batch while the queue stays full, until a thread
/// overflows its stack and the process aborts.
///
/// OBSERVED FAILURE (before the fix): the waker ran hundreds of kilobytes
/// deeper in the stack than its first call on the same thread.
/// `Shared::wake` called `end_reader_batch` (a flush) before the waker on
/// every thread, and the flush's finished write calls `wake_all` -> `wake`
/// again (src/client/shared.rs `wake`, src/client/send.rs `finish_write`).
#[test]
fn the_waker_is_called_at_a_bounded_stack_depth_under_a_stream_of_sends() {
    let inst = Instrument::new();
    let client = Client::connect(&inst.addr(), ClientConfig::default()).unwrap();
    let link = inst.accept();
    let (go, went) = bounded::<()>(1);
    let drained = std::thread::spawn(move || {
        went.recv().unwrap();
        drain(link).join().unwrap()
    });
    let worst = Arc::new(AtomicUsize::new(0));
    let w = worst.clone();
    client.set_waker(Some(Arc::new(move || {
        let here = 0u8;
        let at = std::hint::black_box(&here) as *const u8 as usize;
        SPAN.with(|s| {
            let (lo, hi) = s.get();
            let (lo, hi) = (lo.min(at), hi.max(at));
            s.set((lo, hi));
            w.fetch_max(hi - lo, Ordering::Relaxed);
        });
    })));
    // The instrument stops reading: the client's writes fill the socket,
    // the sender thread blocks in a write, and every other send queues.
    // Each send carries more than a batch inlines, so each is a batch of
    // its own.
    let data = Arc::new(vec![7u8; 20 * 1024]);
    let n = 400;
    let senders: Vec<_> = (0..n)
        .map(|t| {
            let (c, data) = (client.clone(), data.clone());
            std::thread::spawn(move || {
                c.send_with_data(tagged(A, t), &data).unwrap();
            })
        })
        .collect();
    // Every send is queued, or on the wire (one is in the sender
    // thread's blocked write).
    poll_until("the sends to queue", LONG, || {
        let s = client.stats();
        s.queued_messages as u64 + s.messages_sent + 1 >= n as u64
    });
    assert!(client.stats().queued_messages > 100, "the socket took most sends");
    go.send(()).unwrap();
    for s in senders {
        s.join().unwrap();
    }
    client.close();
    drained.join().unwrap();
    let worst = worst.load(Ordering::Relaxed);
    eprintln!("deepest waker call: {worst} bytes below the shallowest on its thread");
    assert!(
        worst < 64 * 1024,
        "the waker was called {worst} bytes deeper in the stack than before on the same thread: \
         each written batch calls the waker, which writes the next batch"
    );
}
