"""Security of sharing sessions, with real Redis ACL users: the server refuses, not our own checks.

Enterprise A's credentials cannot read or write B's keys and streams, nor delete the session's;
the stream-ACL probe refuses a server (here: an ACL) that lets a user read another key's stream;
tampered, replayed and impersonated messages are rejected by the host and by receivers, and
recorded in the sender's ledger view only.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from paichan.bus.server import EmbeddedRedis
from paichan.sharing import protocol as p
from paichan.sharing.acl import Keys, SessionRefused, probe_stream_acl, session_users
from paichan.sharing.enterprise import EnterpriseAgent
from paichan.sharing.host import SessionHost
from paichan.sharing.model import EnterpriseSpec
from paichan.sharing.signing import Envelope, Rejected, Signer, Verifier

NOPERM = redis.exceptions.NoPermissionError


@pytest.fixture
def session(session_redis: EmbeddedRedis) -> Iterator[tuple[SessionHost, dict[str, str]]]:
    r = redis.Redis.from_url(session_redis.url)
    sid = uuid.uuid4().hex[:8]
    host = SessionHost(r, session_redis.url, sid, ["a", "b"])
    urls = host.open()
    yield host, urls
    host.revoke_users()
    keys = list(r.scan_iter(f"{Keys(sid).root}:*"))
    if keys:
        r.delete(*keys)


def member(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def test_probe_passes_this_server_and_refuses_an_acl_that_leaks_another_stream(session_redis: EmbeddedRedis) -> None:
    r = redis.Redis.from_url(session_redis.url)
    assert probe_stream_acl(r, session_redis.url) is None
    # a user whose pattern covers the other probe stream too: the server lets it read, so the probe must refuse
    reason = probe_stream_acl(r, session_redis.url, own_pattern="paichan:probe:*")
    assert reason is not None and "was allowed" in reason
    sid = uuid.uuid4().hex[:8]
    host = SessionHost(r, session_redis.url, sid, ["a", "b"])
    with pytest.raises(SessionRefused, match="was allowed"):
        host.open(probe_pattern="paichan:probe:*")
    assert not r.exists(Keys(sid).meta) and session_users(r, sid) == []
    assert not list(r.scan_iter("paichan:probe:*")), "the probe leaves nothing behind"
    assert not [u for u in r.execute_command("ACL", "USERS") if b"probe" in u]


def test_a_server_whose_default_user_has_no_password_is_refused(redis_server: EmbeddedRedis) -> None:
    """Members know the server's address: with a password-less default user they could bypass their ACL."""
    r = redis.Redis.from_url(redis_server.url)
    sid = uuid.uuid4().hex[:8]
    with pytest.raises(SessionRefused, match="default user needs no password"):
        SessionHost(r, redis_server.url, sid, ["a", "b"]).open()
    assert session_users(r, sid) == [] and not r.exists(Keys(sid).meta)


def test_every_key_of_an_enterprise_carries_its_id_as_a_segment(session: tuple[SessionHost, dict[str, str]]) -> None:
    host, _ = session
    keys = [k.decode() for k in host.r.scan_iter(f"{host.keys.root}:e:*")]
    assert keys
    for k in keys:
        assert k.split(":")[4] in ("a", "b"), k


def test_a_cannot_read_or_write_bs_keys_nor_delete_the_sessions(session: tuple[SessionHost, dict[str, str]]) -> None:
    host, urls = session
    k = host.keys
    a = member(urls["a"])
    host.r.xadd(k.inbox("b"), {"msg": "for b"})
    host.r.set(k.priv("b", "secret"), "b's plan")
    # what a may do (so that the refusals below are not vacuous)
    a.xadd(k.outbox("a"), {"msg": "x"})
    assert a.xreadgroup("agent", "a", {k.inbox("a"): ">"}, count=1) is not None
    a.xrange(k.view("a"))
    a.xrange(k.public)
    a.hgetall(k.registry)
    a.set(k.priv("a", "state"), "mine")
    refused: list[tuple[str, Any]] = [
        ("XREAD b's inbox", lambda: a.xread({k.inbox("b"): "0"})),
        ("XREADGROUP b's inbox", lambda: a.xreadgroup("agent", "a", {k.inbox("b"): ">"})),
        ("XREADGROUP b's inbox, consumer STREAMS",
         lambda: a.execute_command("XREADGROUP", "GROUP", "agent", "STREAMS", "STREAMS", k.inbox("b"), ">")),
        ("XRANGE b's inbox", lambda: a.xrange(k.inbox("b"))),
        ("XRANGE b's ledger view", lambda: a.xrange(k.view("b"))),
        ("XRANGE b's outbox", lambda: a.xrange(k.outbox("b"))),
        ("XADD b's outbox (impersonation)", lambda: a.xadd(k.outbox("b"), {"msg": "x"})),
        ("XADD b's inbox", lambda: a.xadd(k.inbox("b"), {"msg": "x"})),
        ("XADD own inbox (only the host writes inboxes)", lambda: a.xadd(k.inbox("a"), {"msg": "x"})),
        ("XADD public", lambda: a.xadd(k.public, {"msg": "x"})),
        ("GET b's private key", lambda: a.get(k.priv("b", "secret"))),
        ("SET b's private key", lambda: a.set(k.priv("b", "secret"), "x")),
        ("XRANGE the host's ledger", lambda: a.xrange(k.ledger)),
        ("HSET the key registry", lambda: a.hset(k.registry, "a", "other key")),
        ("DEL the public stream", lambda: a.delete(k.public)),
        ("DEL the ledger", lambda: a.delete(k.ledger)),
        ("DEL own inbox", lambda: a.delete(k.inbox("a"))),
        ("DEL b's inbox", lambda: a.delete(k.inbox("b"))),
        ("XTRIM public", lambda: a.xtrim(k.public, maxlen=0)),
        ("XGROUP DESTROY on own inbox", lambda: a.xgroup_destroy(k.inbox("a"), "agent")),
        ("UNLINK the meta hash", lambda: a.unlink(k.meta)),
        ("KEYS", lambda: a.keys("*")),
        ("SCAN", lambda: a.scan(0)),
        ("FLUSHALL", lambda: a.flushall()),
        ("ACL LIST", lambda: a.execute_command("ACL", "LIST")),
        ("CONFIG GET", lambda: a.config_get("*")),
    ]
    allowed = []
    for what, call in refused:
        try:
            call()
            allowed.append(what)
        except NOPERM:
            pass
    assert allowed == []
    assert host.r.xlen(k.public) >= 0 and host.r.get(k.priv("b", "secret")) == b"b's plan"
    assert host.r.xlen(k.inbox("b")) == 1


def _join(host: SessionHost, urls: dict[str, str], eid: str) -> tuple[Signer, redis.Redis]:
    signer = Signer(eid, host.session)
    r = member(urls[eid])
    r.xadd(host.keys.outbox(eid), {"msg": signer.sign("join", {"public_key": signer.public_b64}).wire()})
    return signer, r


def _offer(signer: Signer, price: float = 1.0) -> Envelope:
    return signer.sign("offer", p.Offer(offer_id=uuid.uuid4().hex[:8], capabilities=["milling"], window=(0, 100),
                                        price_per_minute=price).model_dump(), "*")


def _rejections(host: SessionHost) -> list[str]:
    return [e["body"]["reason"] for e in host.ledger() if e["kind"] == "rejected"]


def test_host_rejects_and_records_tampered_replayed_and_impersonated_messages(
        session: tuple[SessionHost, dict[str, str]]) -> None:
    host, urls = session
    k = host.keys
    sa, ra = _join(host, urls, "a")
    sb, rb = _join(host, urls, "b")
    while host.step(block_ms=10):
        pass
    assert host.joined == {"a", "b"}

    good = _offer(sa)
    ra.xadd(k.outbox("a"), {"msg": good.wire()})
    tampered = _offer(sa, price=5.0)
    tampered.body["price_per_minute"] = 0.01  # changed after signing
    ra.xadd(k.outbox("a"), {"msg": tampered.wire()})
    ra.xadd(k.outbox("a"), {"msg": good.wire()})  # replayed
    # impersonation 1: a writes a message that claims to come from b, signed with a's key
    forged = Signer("b", host.session, sa.key, seq=100).sign("offer", good.body, "*")
    ra.xadd(k.outbox("a"), {"msg": forged.wire()})
    # impersonation 2: a copies b's genuine, correctly signed message into its own outbox
    genuine_b = _offer(sb, price=2.0)
    ra.xadd(k.outbox("a"), {"msg": genuine_b.wire()})
    # a message of another session, correctly signed by a's key: replayed across sessions
    other = Signer("a", "othersession", sa.key, seq=500).sign("offer", good.body, "*")
    ra.xadd(k.outbox("a"), {"msg": other.wire()})
    while host.step(block_ms=10):
        pass
    assert sorted(_rejections(host)) == sorted(["tampered", "replayed", "impersonated", "impersonated", "replayed"])
    offers = [json.loads(f[b"msg"]) for _, f in host.r.xrange(k.public)]
    assert [o["body"]["price_per_minute"] for o in offers if o["kind"] == "offer"] == [1.0]
    # the rejections are in a's view (it wrote them), not in b's
    view_a = [json.loads(f[b"entry"]) for _, f in ra.xrange(k.view("a"))]
    view_b = [json.loads(f[b"entry"]) for _, f in rb.xrange(k.view("b"))]
    assert sum(e["kind"] == "rejected" for e in view_a) == 5
    assert not any(e["kind"] == "rejected" for e in view_b)


def test_verifier_rejects_tampered_replayed_and_impersonated() -> None:
    a, b = Signer("a", "s1"), Signer("b", "s1")
    v = Verifier("s1", {"a": a.public_b64, "b": b.public_b64})
    env = _offer(a)
    v.check(env)
    with pytest.raises(Rejected) as e:
        v.check(env)
    assert e.value.reason == "replayed"
    t = _offer(a)
    t.body["price_per_minute"] = 99.0
    with pytest.raises(Rejected) as e:
        v.check(t)
    assert e.value.reason == "tampered"
    forged = Signer("a", "s1", b.key, seq=10).sign("offer", t.body, "*")
    with pytest.raises(Rejected) as e:
        v.check(forged)
    assert e.value.reason == "impersonated"
    with pytest.raises(Rejected) as e:
        v.check(Signer("c", "s1").sign("offer", t.body, "*"))
    assert e.value.reason == "impersonated"


def test_a_receiver_rejects_a_tampered_message_even_from_the_hosts_route(
        session: tuple[SessionHost, dict[str, str]]) -> None:
    """Receivers verify end to end: a message altered on the way (here: written by the admin) is refused."""
    host, urls = session
    spec = EnterpriseSpec(id="b", lines=[{"id": "m", "capabilities": ["milling"]}],  # type: ignore[list-item]
                          offers=[{"capabilities": ["milling"], "window": (0, 500), "price_per_minute": 1}])  # type: ignore[list-item]
    agent = EnterpriseAgent(spec, urls["b"], host.session)
    sa, _ = _join(host, urls, "a")
    agent.join()
    for _ in range(5):
        host.step(block_ms=10)
    req = sa.sign("request", p.Request(request_id="r1", capability="milling", duration=30, earliest_start=0,
                                       latest_finish=200, max_price=100).model_dump(), "*")
    altered = req.model_copy(deep=True)
    altered.body["max_price"] = 1000.0
    host.r.xadd(host.keys.inbox("b"), {"msg": altered.wire()})
    agent.poll(block_ms=10)
    assert any(r.startswith("tampered") for r in agent.rejected)
    assert agent.tentative == {}, "no bid on a tampered request"
    host.r.xadd(host.keys.inbox("b"), {"msg": req.wire()})
    host.r.xadd(host.keys.inbox("b"), {"msg": req.wire()})  # and the genuine one, replayed
    agent.poll(block_ms=10)
    agent.poll(block_ms=10)
    assert any(r.startswith("replayed") for r in agent.rejected)
    assert len(agent.tentative) == 1, "the genuine request got exactly one bid"


def test_misaddressed_and_second_bids_are_refused(session: tuple[SessionHost, dict[str, str]]) -> None:
    """A seller cannot make an award binding behind the buyer's back, nor change its bid after the fact."""
    host, urls = session
    k = host.keys
    sa, ra = _join(host, urls, "a")  # seller
    sb, rb = _join(host, urls, "b")  # buyer

    def send(signer: Signer, r: redis.Redis, kind: str, body: dict[str, Any], to: str) -> None:
        r.xadd(k.outbox(signer.sender), {"msg": signer.sign(kind, body, to).wire()})
        while host.step(block_ms=5):
            pass

    send(sa, ra, "offer", _offer(sa).body, "*")
    send(sb, rb, "request", p.Request(request_id="r1", capability="milling", duration=30, earliest_start=0,
                                      latest_finish=90, max_price=100).model_dump(), "*")
    bid = p.Bid(request_id="r1", bid_id="b1", price=30, completion=60, valid_until=time.time() + 60)
    send(sa, ra, "bid", bid.model_dump(), "b")
    send(sa, ra, "bid", bid.model_copy(update={"price": 90.0}).model_dump(), "b")  # the same bid, dearer
    send(sa, ra, "bid", bid.model_copy(update={"bid_id": "b2", "price": 95.0}).model_dump(), "b")
    send(sb, rb, "award", p.Award(award_id="w1", request_id="r1", bid_id="b1", seller="a").model_dump(), "a")
    assert host.awards["w1"].price == 30 and host.awards["w1"].state == "proposed"
    send(sa, ra, "accept", p.Accept(award_id="w1").model_dump(), "*")  # not to the buyer
    assert host.awards["w1"].state == "proposed"
    send(sa, ra, "accept", p.Accept(award_id="w1").model_dump(), "b")
    assert host.awards["w1"].state == "binding"
    details = [e["body"]["detail"] for e in host.ledger() if e["kind"] == "rejected"]
    assert sum("second bid" in d for d in details) == 2 and sum("addressed to *" in d for d in details) == 1
