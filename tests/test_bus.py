"""The Redis Streams bus against a real Redis (no fakes).

Most tests use the machine's Redis on 127.0.0.1:6379 with a fresh namespace;
the durability test starts its own redis-server on another port and kills it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pydantic import BaseModel

from paichan.bus import Bus, Consumer, EmbeddedRedis, Envelope, make, message

URL = "redis://127.0.0.1:6379/0"  # the bus fixture (conftest.py) uses the same server


@message("test.ping")
class Ping(BaseModel):
    n: int


def ping(n: int, to: str = "agent") -> Envelope:
    return make(Ping(n=n), sender="tester", recipient=to, conversation="c")


def test_send_fetch_commit_and_journal(bus: Bus) -> None:
    c = Consumer(bus, "agent")
    bus.send(ping(1), ping(2))
    got = c.fetch()  # backlog (empty) first
    got = got or c.fetch()
    assert [d.payload.n for d in got] == [1, 2]  # type: ignore[union-attr]
    reply = make(Ping(n=99), "agent", "other", "c")
    c.commit(got[0], {"seen": 1}, [reply])
    assert bus.load_state("agent") == {"seen": 1}
    assert [e.payload["n"] for e in bus.journal_entries()] == [1, 2, 99]
    assert bus.r.xpending(bus.inbox("agent"), "agent")["pending"] == 1  # the second one is not acked yet


def test_malformed_and_unknown_messages_are_dead_lettered(bus: Bus) -> None:
    c = Consumer(bus, "agent")
    bus.send_raw("agent", {"envelope": "{not json"})
    bus.send_raw("agent", {"something": "else"})
    bus.send_raw("agent", {"envelope": make(Ping(n=1), "x", "agent", "c").model_copy(update={"type": "nope"})
                           .model_dump_json()})
    bad_payload = ping(1).model_copy(update={"payload": {"n": "one"}})
    bus.send_raw("agent", {"envelope": bad_payload.model_dump_json()})
    bus.send(ping(7))
    c.fetch()
    deliveries = c.fetch()
    good = [d for d in deliveries if d.error is None]
    for d in deliveries:
        if d.error is not None:
            c.dead_letter(d, d.error)
    assert [d.payload.n for d in good] == [7]  # type: ignore[union-attr]
    reasons = [d["reason"] for d in bus.dead_letters()]
    assert len(reasons) == 4
    assert "bad envelope" in reasons[0]
    assert "no 'envelope' field" in reasons[1]
    assert "unknown message type 'nope'" in reasons[2]
    assert "bad 'test.ping' payload: n" in reasons[3]
    assert bus.r.xpending(bus.inbox("agent"), "agent")["pending"] == 1  # only the good one awaits its commit


CRASHER = textwrap.dedent("""
    import os, sys
    from paichan.bus import Bus, Consumer
    import tests.test_bus  # registers test.ping
    bus = Bus(sys.argv[1], sys.argv[2])
    c = Consumer(bus, "agent", consumer="worker-1")
    c.fetch()
    got = c.fetch(block_ms=2000)
    assert got, "nothing to take"
    print(got[0].envelope.id, flush=True)
    os._exit(1)  # killed mid-message: fetched, never committed
""")


def test_redelivery_after_consumer_killed_mid_message(bus: Bus) -> None:
    bus.send(ping(5))
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", CRASHER, URL, bus.ns], capture_output=True, text=True, cwd=root,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    taken_id = proc.stdout.strip()
    pending = bus.r.xpending(bus.inbox("agent"), "agent")
    assert pending["pending"] == 1 and pending["consumers"][0]["name"] == "worker-1"
    survivor = Consumer(bus, "agent", consumer="worker-2", claim_idle_ms=200)
    survivor.fetch()
    assert survivor.fetch(block_ms=10) == []  # not delivered twice while the first owner may still live
    time.sleep(0.3)
    claimed = survivor.reclaim()
    assert [d.envelope.id for d in claimed] == [taken_id]  # type: ignore[union-attr]
    survivor.commit(claimed[0], {"done": True})
    assert bus.r.xpending(bus.inbox("agent"), "agent")["pending"] == 0


def test_restarted_consumer_rereads_its_own_pending(bus: Bus) -> None:
    bus.send(ping(1))
    first = Consumer(bus, "agent")
    first.fetch()
    assert first.fetch()  # taken, not committed: the process "dies" here
    again = Consumer(bus, "agent")  # same consumer name after restart
    backlog = again.fetch()
    assert [d.payload.n for d in backlog] == [1]  # type: ignore[union-attr]


def test_duplicates_are_recognised_by_envelope_id(bus: Bus) -> None:
    c = Consumer(bus, "agent")
    env = ping(3)
    bus.send(env)
    bus.send(env)  # a producer retrying after a timeout sends the same envelope again
    c.fetch()
    first, second = c.fetch()
    assert not c.is_duplicate(first)
    c.commit(first, {"count": 1})
    assert c.is_duplicate(second)
    c.ack(second)
    assert bus.load_state("agent") == {"count": 1}


COMMIT_CRASHER = textwrap.dedent("""
    import os, sys
    from paichan.bus import Bus, Consumer, make
    from tests.test_bus import Ping
    bus = Bus(sys.argv[1], sys.argv[2])
    c = Consumer(bus, "agent")
    c.fetch()
    (d,) = c.fetch()
    pipe = bus.r.pipeline(transaction=True)  # what commit() builds ...
    pipe.set(bus.state_key("agent"), '{"new": true}')
    bus._queue(pipe, [make(Ping(n=2), "agent", "other", "c")])
    pipe.xack(d.stream, c.group, d.entry_id)
    print("about to die", flush=True)
    os._exit(1)  # ... but the process dies before EXEC
""")


def test_crash_before_commit_leaves_no_trace_and_redelivers(bus: Bus) -> None:
    bus.send(ping(1))
    bus.r.set(bus.state_key("agent"), '{"old": true}')
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", COMMIT_CRASHER, URL, bus.ns], capture_output=True, text=True,
                          cwd=root, timeout=60)
    assert proc.returncode == 1 and "about to die" in proc.stdout, proc.stderr
    assert bus.load_state("agent") == {"old": True}
    assert len(bus.journal_entries()) == 1 and bus.r.xlen(bus.inbox("other")) == 0
    again = Consumer(bus, "agent")
    (d,) = again.fetch()  # the same consumer after restart gets it again
    again.commit(d, {"new": True}, [make(Ping(n=2), "agent", "other", "c")])
    assert bus.load_state("agent") == {"new": True} and bus.r.xlen(bus.inbox("other")) == 1


def test_private_server_keeps_acknowledged_messages_across_a_kill(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        b = Bus(server.url, "durable")
        b.send(ping(1), ping(2))
        c = Consumer(b, "agent")
        c.fetch()
        d1, _ = c.fetch()
        c.commit(d1, {"n": 1})
        time.sleep(1.2)  # appendfsync everysec
        server.kill()
        server = EmbeddedRedis(tmp_path / "redis", port=server.port).start()
        b2 = Bus(server.url, "durable")
        assert b2.load_state("agent") == {"n": 1}
        backlog = Consumer(b2, "agent").fetch()
        assert [d.payload.n for d in backlog] == [2]  # type: ignore[union-attr]
        assert json.loads(b2.r.get(b2.state_key("agent")))["n"] == 1  # type: ignore[arg-type]
    finally:
        server.stop()
