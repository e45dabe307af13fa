//! The live stream through the client: snapshot, live view, close and
//! reopen, and teardown with the client.

use flamingo_client::codec::{CommandCode, Message};
use flamingo_client::sim::{pattern_pixel, SimConfig, Simulator};
use flamingo_client::{Client, ClientConfig};

use crate::common::LONG;

fn setup() -> (Simulator, Client) {
    let sim = Simulator::start(SimConfig::default().image_size(64, 48).live_fps(200.0)).unwrap();
    let c = Client::connect(&sim.addr().to_string(), ClientConfig::default()).unwrap();
    (sim, c)
}

#[test]
fn snapshot_frame_is_pixel_exact() {
    let (_sim, c) = setup();
    let live = c.live(LONG).unwrap();
    c.request_checked(Message::new(CommandCode::CAMERA_SNAPSHOT_GET), LONG)
        .unwrap();
    let f = live.next_frame(LONG).unwrap();
    assert_eq!((f.width(), f.height()), (64, 48));
    let n = f.frame_number();
    for y in 0..48 {
        for x in 0..64 {
            assert_eq!(f.pixel(x, y), pattern_pixel(x, y, n), "({x},{y})");
        }
    }
    assert_eq!(f.pixels()[64 * 47 + 63], pattern_pixel(63, 47, n));
}

#[test]
fn live_view_streams_and_reopens_after_close() {
    let (sim, c) = setup();
    for round in 0..3 {
        let live = c.live(LONG).unwrap();
        c.request_checked(Message::new(CommandCode::CAMERA_LIVE_VIEW_START), LONG)
            .unwrap();
        let a = live.next_frame(LONG).unwrap();
        let b = live.next_frame_after(a.sequence(), LONG).unwrap();
        assert!(b.frame_number() > a.frame_number(), "round {round}");
        c.request_checked(Message::new(CommandCode::CAMERA_LIVE_VIEW_STOP), LONG)
            .unwrap();
        c.close_live();
        assert!(live.is_finished());
        assert!(c.live_if_open().is_none());
    }
    assert!(sim.counters().live_connections >= 3);
}

#[test]
fn closing_the_client_closes_the_live_stream() {
    let (_sim, c) = setup();
    let live = c.live(LONG).unwrap();
    c.close();
    assert!(live.is_finished());
    assert!(c.live(LONG).unwrap_err().is_disconnected());
}

#[test]
fn live_disabled_in_config_is_an_invalid_argument() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let c = Client::connect(&sim.addr().to_string(), ClientConfig::default().live(false)).unwrap();
    let e = c.live(LONG).unwrap_err();
    assert!(
        matches!(e, flamingo_client::Error::InvalidArgument { .. }),
        "{e}"
    );
}
