//! Starting, stopping and running many simulators.
#![cfg(feature = "sim")]

use super::util;

use std::net::TcpListener;

use flamingo_client::codec::{CommandCode as C, FrameError};
use flamingo_client::sim::{SimConfig, Simulator};
use util::*;

#[test]
fn drop_closes_every_connection() {
    let sim = Simulator::start(SimConfig::default().image_size(8, 8)).unwrap();
    let mut a = Client::connect(sim.addr());
    let mut b = Client::connect(sim.addr());
    let mut live = LiveClient::connect(sim.live_addr());
    a.request(flagged(C::CAMERA_LIVE_VIEW_START));
    b.fence();
    live.frame();
    drop(sim);
    for c in [&mut a, &mut b] {
        // Events queued before the stop may still arrive; then the end.
        loop {
            match c.try_recv() {
                Ok(_) => continue,
                Err(FrameError::Closed) | Err(FrameError::EofMidMessage { .. }) => break,
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("expected the connection to close: {e}"),
            }
        }
    }
    assert!(live.closed());
}

#[test]
fn stop_is_idempotent_and_frees_the_ports() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let (addr, live) = (sim.addr(), sim.live_addr());
    let mut c = Client::connect(addr);
    c.fence();
    sim.stop();
    sim.stop();
    assert!(matches!(c.try_recv(), Err(FrameError::Closed)));
    drop(sim);
    // Both ports can be bound again.
    drop(TcpListener::bind(addr).unwrap());
    drop(TcpListener::bind(live).unwrap());
}

#[test]
fn restart_on_the_same_port() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let port = sim.addr().port();
    let mut c = Client::connect(sim.addr());
    c.request(flagged(C::SYSTEM_STATE_GET));
    drop(sim);
    let sim = Simulator::start(SimConfig::default().port(port)).unwrap();
    assert_eq!(sim.addr().port(), port);
    assert_eq!(sim.live_addr().port(), port + 1);
    let mut c = Client::connect(sim.addr());
    assert_eq!(c.request(flagged(C::SYSTEM_STATE_GET)).int32_data0, 0);
}

#[test]
fn port_in_use_and_65535_are_errors() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    assert!(Simulator::start(SimConfig::default().port(sim.addr().port())).is_err());
    assert!(Simulator::start(SimConfig::default().port(u16::MAX)).is_err());
    assert!(Simulator::start(SimConfig::default().image_size(0, 5)).is_err());
}

#[test]
fn twenty_simulators_in_parallel() {
    let threads: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let sim = Simulator::start(SimConfig::default().image_size(16 + i, 8)).unwrap();
                let mut c = Client::connect(sim.addr());
                let r = c.request(flagged(C::CAMERA_IMAGE_SIZE_GET));
                assert_eq!(r.int32_data0 as u32, 16 + i);
                let mut live = LiveClient::connect(sim.live_addr());
                c.request(flagged(C::CAMERA_SNAPSHOT_GET));
                let (h, _) = live.frame();
                assert_eq!(h.width, 16 + i);
                c.request(
                    flagged(C::STAGE_POSITION_SET)
                        .with_int32_data0(1)
                        .with_double_data(8.0),
                );
                assert_eq!(c.recv().code, C::STAGE_MOTION_STOPPED);
                // Handed back running: all 20 are alive together below.
                sim
            })
        })
        .collect();
    let sims: Vec<Simulator> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut addrs: Vec<_> = sims.iter().map(|s| s.addr()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 20);
    for s in &sims {
        assert_eq!(s.live_addr().port(), s.addr().port() + 1);
    }
}

#[test]
fn simulator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Simulator>();
}

#[test]
fn stop_under_load() {
    use flamingo_client::sim::Faults;
    use std::time::Duration;
    for round in 0..10 {
        let sim =
            Simulator::start(SimConfig::default().image_size(256, 256).live_fps(500.0)).unwrap();
        let addr = sim.addr();
        // A client that never reads, with a flood backing up its socket.
        let mut stuck = Client::connect(addr);
        stuck.fence();
        sim.set_faults(Faults {
            flood: Some((C::UI_SET_GAUGE_VALUE, 200_000, 0)),
            ..Faults::default()
        });
        // A live client that never reads, with live view on.
        let _live = LiveClient::connect(sim.live_addr());
        let mut c = Client::connect(addr);
        c.send(flagged(C::CAMERA_LIVE_VIEW_START));
        // A running workflow.
        c.send_with(
            flagged(C::CAMERA_WORK_FLOW_START),
            b"Number of planes = 100000\n",
        );
        // Clients connecting while the simulator stops.
        let hammer = std::thread::spawn(move || {
            for _ in 0..50 {
                match std::net::TcpStream::connect(addr) {
                    Ok(s) => drop(s),
                    Err(_) => break,
                }
            }
        });
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(sim);
        hammer.join().unwrap();
    }
}
