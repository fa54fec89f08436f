"""The Redis Streams bus against a real Redis (no fakes).

Most tests use the session's private redis-server (``redis_server`` in conftest.py)
with a fresh namespace; the durability test starts its own redis-server and kills it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from pydantic import BaseModel

from paichan.bus import Bus, Consumer, EmbeddedRedis, Envelope, make, message


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
    proc = subprocess.run([sys.executable, "-c", CRASHER, bus.url, bus.ns], capture_output=True, text=True, cwd=root,
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
    assert c.duplicates([first, second]) == set()
    c.commit(first, {"count": 1})
    assert c.is_duplicate(second)
    assert c.duplicates([first, second]) == {env.id}  # the batched check (one SMISMEMBER) agrees
    c.ack(second)
    assert bus.load_state("agent") == {"count": 1}


COMMIT_CRASHER = textwrap.dedent("""
    import os, socket, sys
    from urllib.parse import urlparse
    import redis
    from paichan.bus import Bus, Consumer, make
    from tests.test_bus import Ping

    url, ns, transaction = sys.argv[1], sys.argv[2], sys.argv[3] == "multi"

    def resp(*args):
        out = [b"*%d\\r\\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\\r\\n%s\\r\\n" % (len(b), b))
        return b"".join(out)

    def die_before_exec(pipe, raise_on_error=True):
        # What commit() queued, sent to Redis on a raw connection of its own: MULTI and every command,
        # each answered QUEUED by the server; then the process dies, so EXEC never comes.
        u = urlparse(url)
        sock = socket.create_connection((u.hostname, u.port))
        cmds = [args for args, _ in pipe.command_stack]
        sock.sendall(b"".join(resp(*c) for c in ([("MULTI",)] if transaction else []) + cmds))
        want = b"+OK\\r\\n" + b"+QUEUED\\r\\n" * len(cmds)
        got = b""
        sock.settimeout(5)
        try:
            while len(got) < len(want):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
        except TimeoutError:
            pass
        print(f"{len(cmds)} commands sent, Redis answered {got!r}", flush=True)
        if transaction and got != want:
            print("not queued", flush=True)
            os._exit(3)
        os._exit(1)

    bus = Bus(url, ns)
    # unfenced: its commit is MULTI/EXEC (a fenced commit is one script call, which Redis runs whole or not at all)
    c = Consumer(bus, "agent", fence=False)
    c.fetch()
    (d,) = c.fetch()
    redis.client.Pipeline.execute = die_before_exec
    c.commit(d, {"new": True}, [make(Ping(n=2), "agent", "other", "c")])  # the real commit, up to EXEC
""")


def _crash_in_commit(bus: Bus, mode: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-c", COMMIT_CRASHER, bus.url, bus.ns, mode], capture_output=True,
                          text=True, cwd=root, timeout=60)


def test_crash_before_exec_leaves_no_trace_and_redelivers(bus: Bus) -> None:
    """A committing process dies after Redis has queued its MULTI block and before EXEC: nothing of it lands."""
    bus.send(ping(1))
    bus.r.set(bus.state_key("agent"), '{"old": true}')
    proc = _crash_in_commit(bus, "multi")
    assert proc.returncode == 1 and "QUEUED" in proc.stdout, (proc.stdout, proc.stderr)
    assert bus.load_state("agent") == {"old": True}
    assert len(bus.journal_entries()) == 1 and bus.r.xlen(bus.inbox("other")) == 0
    assert not bus.r.exists(bus.processed_key("agent"))
    assert bus.r.xpending(bus.inbox("agent"), "agent")["pending"] == 1
    again = Consumer(bus, "agent")
    (d,) = again.fetch()  # the same consumer after restart gets it again
    again.commit(d, {"new": True}, [make(Ping(n=2), "agent", "other", "c")])
    assert bus.load_state("agent") == {"new": True} and bus.r.xlen(bus.inbox("other")) == 1


def test_the_crash_test_would_see_a_commit_without_transaction(bus: Bus) -> None:
    """The same crash with the commands sent outside MULTI changes Redis: the test above can fail."""
    bus.send(ping(1))
    bus.r.set(bus.state_key("agent"), '{"old": true}')
    proc = _crash_in_commit(bus, "plain")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
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


def test_password_protected_redis_is_said_as_such_and_never_printed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis that needs a password: without it the run says so (not "not reachable"); with a wrong one too;
    the password never appears in what is printed."""
    import shutil

    from paichan.bus.server import RedisUnavailable, free_port, masked, resolve_redis

    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--requirepass", "s3cret-pw", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ok = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                redis.Redis.from_url(ok).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        for url in (f"redis://127.0.0.1:{port}/0", f"redis://:wrong-pw@127.0.0.1:{port}/0"):
            monkeypatch.setenv("REDIS_URL", url)
            with pytest.raises(RedisUnavailable) as err:
                resolve_redis(tmp_path)
            assert "needs a password" in str(err.value) and "wrong-pw" not in str(err.value)
        monkeypatch.setenv("REDIS_URL", ok)
        assert resolve_redis(tmp_path) == (ok, None)
        assert masked(ok) == f"redis://:***@127.0.0.1:{port}/0"
        assert masked("redis://app:pw@h:1/0") == "redis://app:***@h:1/0"
        assert masked("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    finally:
        proc.kill()
        proc.wait()


def test_remove_namespace_removes_only_its_own_keys(redis_server: EmbeddedRedis) -> None:
    mine, theirs = Bus(redis_server.url, "rm:mine"), Bus(redis_server.url, "rm:mine-not")
    for b in (mine, theirs):
        c = Consumer(b, "agent")
        b.send(ping(1))
        c.publish({"x": 1}, [])
    assert mine.remove_namespace() >= 4  # inbox, journal, state, epoch
    assert list(mine.r.scan_iter("rm:mine:*")) == []
    assert theirs.load_state("agent") == {"x": 1} and theirs.r.exists(theirs.journal)
    theirs.remove_namespace()
