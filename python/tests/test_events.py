"""Events as subscriptions (with timeouts) and as callbacks, and workflows."""

import threading

import pytest

import flamingo_client as fc
from flamingo_client import Client, Code, Message

from conftest import workflow_text



def broadcast(sim, client, msg: Message) -> None:
    """Broadcasts once the simulator has surely registered the client's
    connection (it has answered a request on it)."""
    client.request(0x7F01)
    assert sim.broadcast(msg) >= 1


def test_subscription_sees_motion_stopped(client):
    with client.subscribe([Code.STAGE_MOTION_STOPPED]) as sub:
        client.stage.move_to("y", 20.0)
        ev = sub.get(timeout=5.0)
    assert ev.kind == "motion_stopped" and ev.code == Code.STAGE_MOTION_STOPPED
    assert ev.axis == "y" and ev.position == pytest.approx(20.0)


def test_subscription_timeout_and_poll(client):
    with client.subscribe() as sub:
        assert sub.poll() is None
        with pytest.raises(fc.FlamingoTimeoutError):
            sub.get(timeout=0.05)
        assert list(sub.events(timeout=0.05)) == []


def test_subscription_iteration_ends_with_closed(sim, client):
    sub = client.subscribe()
    broadcast(sim, client, Message(0x9004, status=1, int32_data0=1, int32_data1=2))
    first = sub.get(timeout=5.0)
    assert first.kind == "gauge_value" and (first.current, first.total) == (1, 2)
    client.close()
    kinds = [ev.kind for ev in sub]  # ends by itself
    assert kinds[-1] == "closed"


def test_callback_receives_events(sim, client):
    got = []
    done = threading.Event()

    def on(ev):
        got.append(ev)
        done.set()

    cid = client.on_event(on, codes=[0x9003])
    broadcast(sim, client, Message(0x9004, int32_data0=1))  # filtered out
    broadcast(sim, client, Message(0x9003, int32_data0=42))
    assert done.wait(5.0)
    assert [e.kind for e in got] == ["gauge_size"] and got[0].total == 42
    assert client.remove_callback(cid)
    assert not client.remove_callback(cid)


def test_callback_calls_back_into_client(sim, client):
    """A callback on the dispatcher thread may make requests on the same client."""
    answers = []
    done = threading.Event()

    def on(ev):
        answers.append(client.camera.image_size())
        answers.append(client.stage.position(ev.axis))
        done.set()

    client.on_event(on, codes=[Code.STAGE_MOTION_STOPPED])
    client.stage.move_to("x", 9.5)
    assert done.wait(5.0)
    assert answers[0] == (64, 48)
    assert answers[1] == pytest.approx(9.5)


def test_failing_callback_does_not_stop_others(sim, client, caplog):
    seen = threading.Event()
    client.on_event(lambda ev: 1 / 0)
    client.on_event(lambda ev: seen.set())
    broadcast(sim, client, Message(0x9003, int32_data0=1))
    assert seen.wait(5.0)


def test_workflow_progress_and_summary(sim, client):
    run = client.workflows.start(text=workflow_text(20))
    kinds = []
    progress = []
    for u in run.updates(timeout=10.0):
        kinds.append(u.kind)
        if u.kind == "progress":
            progress.append((u.current, u.total))
    assert kinds[-1] == "finished"
    assert progress[-1] == (20, 20)
    s = run.summary
    assert s is not None and s.complete
    assert (s.images_acquired, s.images_expected, s.errors) == (20, 20, 0)
    assert sim.workflows()[-1] == workflow_text(20).encode()


def test_workflow_from_file_and_wait(sim, client, tmp_path):
    path = tmp_path / "ZStack.txt"
    path.write_bytes(workflow_text(5).replace("\n", "\r\n").encode())
    run = client.workflows.start(str(path))
    s = run.wait(timeout=10.0)
    assert s.images_acquired == 5
    assert sim.workflows()[-1] == path.read_bytes()  # sent unchanged, CRLF kept


def test_workflow_stop():
    with fc.Simulator(image_size=(8, 8), plane_interval=0.01) as sim, Client(sim.address) as c:
        run = c.workflows.start(text=workflow_text(10_000))
        for u in run.updates(timeout=10.0):
            if u.kind == "progress":
                break
        run.stop()
        s = run.wait(timeout=10.0)
        assert s.stopped and s.images_acquired < 10_000
        c.system.wait_until_idle(timeout=5.0)


def test_workflow_invalid_arguments(client):
    with pytest.raises(fc.InvalidArgumentError):
        client.workflows.start()


def test_workflow_stop_from_another_thread_while_iterating():
    """A GUI thread stops the run while a worker thread waits for its updates."""
    with fc.Simulator(image_size=(8, 8), plane_interval=0.01) as sim, Client(sim.address) as c:
        run = c.workflows.start(text=workflow_text(100_000))
        kinds = []
        running = threading.Event()

        def worker():
            for u in run.updates(timeout=30.0):
                kinds.append(u.kind)
                if u.kind == "progress":
                    running.set()

        t = threading.Thread(target=worker)
        t.start()
        assert running.wait(5.0)
        assert run.progress is not None  # readable while the worker waits
        run.stop()
        t.join(10.0)
        assert not t.is_alive()
        assert kinds[-1] == "finished" and run.summary.stopped


def test_workflow_wait_timeout_leaves_it_running():
    with fc.Simulator(image_size=(8, 8), plane_interval=0.01) as sim, Client(sim.address) as c:
        run = c.workflows.start(text=workflow_text(100_000))
        with pytest.raises(fc.FlamingoTimeoutError):
            run.wait(timeout=0.2)
        assert not run.is_finished
        c.workflows.stop()
        c.system.wait_until_idle(timeout=5.0)
