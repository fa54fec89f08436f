"""The session host: opens a session, routes signed messages between outboxes and inboxes, keeps the ledger.

The host runs as Redis's default (or an admin) user. It is the only writer of the inboxes, the
public stream and the ledger, so every enterprise reaches another only through it, and it sees
every message first: it verifies signature, sender and freshness, passes requests only to the
members whose offers match, keeps bids sealed (to the buyer alone), times out unanswered awards
and silent members, and cancels whatever a leaving member had promised. Receivers verify every
message again with the senders' public keys, so a host cannot forge a member's message either.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from paichan.sharing import protocol as p
from paichan.sharing.acl import (
    Keys,
    SessionRefused,
    create_user,
    entries,
    open_default_user,
    probe_stream_acl,
    session_users,
)
from paichan.sharing.signing import HOST, Envelope, Rejected, Signer, Verifier, parse, verify_signature

Progress = Callable[[str], None]
SESSION_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
ENTERPRISE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
GROUP = "agent"  # the consumer group an enterprise reads its inbox with
HOST_GROUP = "host"  # the host's group on every outbox


@dataclass
class _Request:
    buyer: str
    body: p.Request
    asked: set[str]
    bids: dict[str, tuple[str, p.Bid]] = field(default_factory=dict)  # bid id -> (seller, bid)
    open: bool = True


@dataclass
class _Award:
    award_id: str
    buyer: str
    seller: str
    capability: str
    price: float
    completion: int
    deadline: float  # the seller must accept by then
    state: str = "proposed"  # proposed -> binding -> (cancelled) | refused | lapsed


class SessionHost:
    """One session's host; ``open`` it, call ``step`` in a loop, then ``close`` it."""

    def __init__(self, r: redis.Redis, base_url: str, session: str, enterprises: list[str],
                 progress: Progress | None = None, accept_timeout: float = 15.0, silence_timeout: float = 20.0) -> None:
        if not SESSION_ID.match(session):
            raise ValueError(f"session id '{session}': use 1-32 letters or digits (a segment of key and user names)")
        for e in enterprises:
            if not ENTERPRISE_ID.match(e) or e == HOST:
                raise ValueError(f"enterprise id '{e}': use 1-32 letters, digits, '_' or '-' (not 'host')")
        self.r = r
        self.base_url = base_url
        self.session = session
        self.keys = Keys(session)
        self.members = list(enterprises)
        self.progress = progress or (lambda _m: None)
        self.accept_timeout = accept_timeout
        self.silence_timeout = silence_timeout
        self.signer = Signer(HOST, session)
        self.verifier = Verifier(session, {HOST: self.signer.public_b64})
        self.joined: set[str] = set()
        self.left: set[str] = set()
        self.last_seen: dict[str, float] = {}
        self.offers: dict[str, list[p.Offer]] = {e: [] for e in enterprises}
        self.requests: dict[str, _Request] = {}
        self.awards: dict[str, _Award] = {}
        self.messages = 0  # routed between members
        self.rejected = 0
        self.entries = 0  # ledger entries written
        self.closed = False
        self.started = False

    # -- session life cycle ------------------------------------------------------------------------------------------

    def open(self, probe_pattern: str | None = None) -> dict[str, str]:
        """Probe the server, create streams and one ACL user per member; returns each member's redis:// URL."""
        reason = open_default_user(self.r) or probe_stream_acl(self.r, self.base_url, probe_pattern)
        if reason:
            raise SessionRefused(f"cannot open session {self.session}: {reason}")
        if self.r.exists(self.keys.meta):
            raise SessionRefused(f"session {self.session} exists already on this Redis")
        k = self.keys
        try:
            urls = {e: create_user(self.r, k, e, self.base_url) for e in self.members}
        except redis.ResponseError as err:
            self.revoke_users()
            raise SessionRefused(f"cannot open session {self.session}: creating its ACL users failed ({err}); "
                                 "sessions need Redis 7 or later (ACL selectors)") from None
        for e in self.members:
            self.r.xgroup_create(k.inbox(e), GROUP, id="0", mkstream=True)
            self.r.xgroup_create(k.outbox(e), HOST_GROUP, id="0", mkstream=True)
            self.r.xgroup_create(k.view(e), "init", id="0", mkstream=True)  # (MKSTREAM: the stream exists, empty)
        self.r.xgroup_create(k.public, "init", id="0", mkstream=True)
        self.r.hset(k.meta, mapping={"state": "open", "enterprises": json.dumps(self.members),
                                     "host_key": self.signer.public_b64, "opened": _now()})
        self.r.hset(k.registry, HOST, self.signer.public_b64)
        self._ledger("open", HOST, [], True, {"enterprises": self.members})
        self.progress(f"session {self.session} open for {', '.join(self.members)} (stream ACLs probed: safe)")
        return urls

    def close(self, keep_users: bool = False, reason: str = "closed by the host") -> None:
        """Lapse what is not binding, tell everyone, revoke the users (unless ``keep_users``)."""
        if self.closed:
            return
        self.step(block_ms=0)
        for a in list(self.awards.values()):
            if a.state == "proposed":
                self._end_award(a, "lapsed", "session closed before the seller accepted")
        for e in self.members:
            if e not in self.left:
                self._send(e, "closed", p.Closed(reason=reason))
        self._ledger("close", HOST, [], True, {"reason": reason})
        self.r.hset(self.keys.meta, "state", "closed")
        self.closed = True
        self.progress(f"session {self.session} closed ({reason})")
        if not keep_users:
            self.revoke_users()

    def revoke_users(self) -> None:
        users = session_users(self.r, self.session)
        for u in users:
            self.r.execute_command("ACL", "DELUSER", u)
        self.progress(f"session {self.session}: {len(users)} ACL users revoked")

    def ledger(self) -> list[dict[str, Any]]:
        rows = entries([(self.keys.ledger, self.r.xrange(self.keys.ledger))])[0][1]
        return [json.loads(f[b"entry"]) for _, f in rows]

    def export_ledger(self, path: Path) -> int:
        entries = self.ledger()
        path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
        return len(entries)

    def close_requested(self) -> bool:
        """A `paichan session close` from another process sets the meta state to 'closing'."""
        return bool(self.r.hget(self.keys.meta, "state") == b"closing")

    # -- routing -----------------------------------------------------------------------------------------------------

    def step(self, block_ms: int = 50) -> int:
        """Route what the members wrote; returns how many messages other than heartbeats were handled."""
        live = [e for e in self.members if e not in self.left]
        if not live:
            return 0
        got = self.r.xreadgroup(HOST_GROUP, "host", {self.keys.outbox(e): ">" for e in live}, count=200,
                                block=block_ms or None)
        n = 0
        joined_before = len(self.joined)
        for stream, items in entries(got):
            owner = stream.split(":")[-2]
            for entry_id, fields in items:
                n += self._handle(owner, fields.get(b"msg", b"")) != "heartbeat"
                self.r.xack(stream, HOST_GROUP, entry_id)
        if not self.started and len(self.joined) == len(self.members) and joined_before == len(self.members):
            # everyone joined in an earlier round and this round routed what they wrote next (their offers)
            self.started = True
            for e in self.members:
                self._send(e, "started", p.Started(members=len(self.members)))
            self._ledger("started", HOST, [], True, {"members": len(self.members)})
        self._timeouts()
        return n

    def _handle(self, owner: str, raw: bytes) -> str:
        """Verify and route one message; returns its kind ("" if rejected)."""
        self.last_seen[owner] = time.time()
        try:
            env = parse(raw)
            if env.kind == "join":
                self._join(owner, env)
                return env.kind
            if owner not in self.joined:
                raise Rejected("impersonated", f"{env.kind} from {owner} before it joined")
            self.verifier.check(env, stream_owner=owner)
            data = p.body(env.kind, env.body)
        except (Rejected, p.BadBody) as e:
            reason = e.reason if isinstance(e, Rejected) else "malformed"
            self.rejected += 1
            self._ledger("rejected", HOST, [owner], False, {"reason": reason, "detail": str(e)})
            self.progress(f"rejected a message in {owner}'s outbox: {e}")
            return ""
        if owner in self.left:
            return env.kind
        expected = self._addressee(owner, env.kind, data)
        if expected is not None and env.to != expected:
            self._ledger("rejected", HOST, [owner], False, {
                "reason": "malformed", "detail": f"{env.kind} addressed to {env.to}, not {expected}"})
            return ""
        handler = getattr(self, f"_on_{env.kind}", None)
        if handler is None:
            self._ledger("rejected", HOST, [owner], False, {"reason": "malformed",
                                                            "detail": f"{env.kind} is not for members to send"})
            return ""
        handler(owner, env, data)
        return env.kind

    def _addressee(self, owner: str, kind: str, data: p.Body) -> str | None:
        """Whom a member's message of ``kind`` must be addressed to (None: unknown yet; the handler refuses)."""
        if kind in ("offer", "request", "request_closed"):
            return "*"
        if kind in ("leave", "heartbeat"):
            return HOST
        if isinstance(data, p.Bid | p.Decline):
            req = self.requests.get(data.request_id)
            return req.buyer if req is not None else None
        if isinstance(data, p.Award):
            return data.seller
        if isinstance(data, p.Accept | p.Refuse | p.Cancel):
            a = self.awards.get(data.award_id)
            if a is None:
                return None
            if isinstance(data, p.Cancel):
                return a.seller if owner == a.buyer else a.buyer
            return a.buyer
        return None

    def _join(self, owner: str, env: Envelope) -> None:
        body = p.body("join", env.body)
        assert isinstance(body, p.Join)
        if env.sender != owner or env.session != self.session or env.to != HOST:
            why = (Rejected("impersonated", f"join claims {env.sender} but was written by {owner}")
                   if env.sender != owner else Rejected("replayed", f"a join for session {env.session}, to {env.to}"))
            self._ledger("rejected", HOST, [owner], False, {"reason": why.reason, "detail": str(why)})
            return
        try:
            verify_signature(env, body.public_key)  # proof that the joiner holds the key it registers
        except Rejected as e:
            self._ledger("rejected", HOST, [owner], False, {"reason": e.reason, "detail": str(e)})
            return
        if owner in self.joined:
            self._ledger("rejected", HOST, [owner], False,
                         {"reason": "replayed", "detail": f"{owner} joined already; a key cannot be replaced"})
            return
        self.joined.add(owner)
        self.verifier.keys[owner] = body.public_key
        self.verifier.last_seq[owner] = env.seq
        self.verifier.nonces.add(env.nonce)
        self.r.hset(self.keys.registry, owner, body.public_key)
        self._ledger("join", owner, [owner], False, {})
        self.progress(f"{owner} joined")

    def _on_heartbeat(self, owner: str, env: Envelope, data: p.Body) -> None:
        pass

    def _on_offer(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Offer)
        self.offers[owner].append(data)
        self.r.xadd(self.keys.public, {"msg": env.wire()})
        self.messages += 1
        self._ledger("offer", owner, [owner], False, data.model_dump())

    def _matches(self, seller: str, req: p.Request) -> bool:
        if seller in self.left or seller not in self.joined:
            return False
        # not by price: a seller may bid below its list price, down to a floor only it knows
        return any(req.capability in o.capabilities and o.window[0] < req.latest_finish
                   and o.window[1] > req.earliest_start and req.quantity >= o.min_lot for o in self.offers[seller])

    def _on_request(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Request)
        if data.request_id in self.requests:
            self._ledger("rejected", HOST, [owner], False, {"reason": "replayed",
                                                            "detail": f"request {data.request_id} exists"})
            return
        asked = {e for e in self.members if e != owner and self._matches(e, data)}
        self.requests[data.request_id] = _Request(owner, data, asked)
        self._ledger("request", owner, [owner], False, data.model_dump() | {"asked": len(asked)})
        for e in sorted(asked):
            self.r.xadd(self.keys.inbox(e), {"msg": env.wire()})
            self.messages += 1
        self._send(owner, "routed", p.Routed(request_id=data.request_id, asked=len(asked)))

    def _on_bid(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Bid)
        req = self.requests.get(data.request_id)
        if req is None or owner not in req.asked or not req.open or env.to != req.buyer:
            detail = f"bid on unknown or closed request {data.request_id}"
            self._ledger("rejected", HOST, [owner], False, {"reason": "malformed", "detail": detail})
            return
        if data.bid_id in req.bids or any(s == owner for s, _ in req.bids.values()):
            self._ledger("rejected", HOST, [owner], False, {
                "reason": "replayed", "detail": f"a second bid by {owner} on request {data.request_id}"})
            return
        req.bids[data.bid_id] = (owner, data)
        self._forward(req.buyer, env)
        self._ledger("bid", owner, [owner, req.buyer], False, data.model_dump())

    def _on_decline(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Decline)
        req = self.requests.get(data.request_id)
        if req is None or owner not in req.asked:
            return
        self._forward(req.buyer, env)
        self._ledger("decline", owner, [owner, req.buyer], False, data.model_dump())

    def _on_award(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Award)
        req = self.requests.get(data.request_id)
        bid = req.bids.get(data.bid_id) if req is not None else None
        if req is None or req.buyer != owner or bid is None or bid[0] != data.seller or data.award_id in self.awards:
            self._ledger("rejected", HOST, [owner], False, {"reason": "malformed",
                                                            "detail": f"award {data.award_id} matches no bid"})
            return
        seller, b = bid
        a = _Award(data.award_id, owner, seller, req.body.capability, b.price, b.completion,
                   time.time() + self.accept_timeout)
        self.awards[a.award_id] = a
        self._forward(seller, env)
        self._ledger("award", owner, [owner, seller], False,
                     data.model_dump() | {"price": b.price, "completion": b.completion, "state": "proposed"})

    def _on_request_closed(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.RequestClosed)
        req = self.requests.get(data.request_id)
        if req is None or req.buyer != owner or not req.open:
            return
        req.open = False
        for e in sorted(req.asked - self.left):
            self._forward(e, env)

    def _on_accept(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Accept)
        a = self.awards.get(data.award_id)
        if a is None or a.seller != owner or a.state != "proposed":
            self._ledger("rejected", HOST, [owner], False, {"reason": "malformed",
                                                            "detail": f"accept of award {data.award_id} not open"})
            return
        a.state = "binding"
        self._forward(a.buyer, env)
        contract = p.Contract(award_id=a.award_id, buyer=a.buyer, seller=a.seller, capability=a.capability,
                              completion=a.completion)
        self.r.xadd(self.keys.public, {"msg": self.signer.sign("contract", contract.model_dump(), "*").wire()})
        self._ledger("contract", owner, [a.buyer, a.seller], True, contract.model_dump())

    def _on_refuse(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Refuse)
        a = self.awards.get(data.award_id)
        if a is None or a.seller != owner or a.state != "proposed":
            return
        a.state = "refused"
        self._forward(a.buyer, env)
        self._ledger("cancellation", owner, [a.buyer, a.seller], False,
                     {"award_id": a.award_id, "state": "refused", "reason": data.reason})

    def _on_cancel(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Cancel)
        a = self.awards.get(data.award_id)
        if a is None or owner not in (a.buyer, a.seller) or a.state not in ("proposed", "binding"):
            return
        self._end_award(a, "cancelled", data.reason or f"cancelled by {owner}", by=owner, notify=False)

    def _on_leave(self, owner: str, env: Envelope, data: p.Body) -> None:
        assert isinstance(data, p.Leave)
        self.drop_member(owner, data.reason or "left the session", tell=False)

    # -- timeouts, leaving, compensation ---------------------------------------------------------------------------

    def _timeouts(self) -> None:
        now = time.time()
        for a in list(self.awards.values()):
            if a.state == "proposed" and now > a.deadline:
                self._end_award(a, "lapsed", f"{a.seller} did not accept within {self.accept_timeout:g} s")
        for e in list(self.joined - self.left):
            if now - self.last_seen.get(e, now) > self.silence_timeout:
                self.drop_member(e, f"silent for more than {self.silence_timeout:g} s")

    def drop_member(self, eid: str, reason: str, tell: bool = True) -> None:
        """Cancel every open award and request of ``eid``: nothing it promised stays dangling.

        A member dropped for silence may still be alive (a pause, a partition): ``tell`` sends it the
        cancellations and "closed", so that it stops instead of keeping contracts nobody honours.
        """
        if eid in self.left:
            return
        self.left.add(eid)
        self._ledger("leave", eid, [eid], False, {"reason": reason})
        self.progress(f"{eid} left the session: {reason}")
        for a in list(self.awards.values()):
            if eid in (a.buyer, a.seller) and a.state in ("proposed", "binding"):
                self._end_award(a, "cancelled", f"{eid} left the session ({reason})", by=eid)
        for req in self.requests.values():
            if req.buyer == eid and req.open:
                req.open = False
                for e in sorted(req.asked - self.left):
                    self._send(e, "request_closed", p.RequestClosed(request_id=req.body.request_id))
        if tell:  # after the cancellations, so that it reads them before it stops
            self._send(eid, "closed", p.Closed(reason=f"dropped from the session: {reason}"))

    def _end_award(self, a: _Award, state: str, reason: str, by: str = HOST, notify: bool = True) -> None:
        """Cancellation with compensation: whoever breaks a binding contract owes the other its price.

        The entry is the two parties' (it carries the price); a broken public contract is also
        announced publicly, without the price.
        """
        was = a.state
        a.state = state
        comp = None
        if was == "binding" and by in (a.buyer, a.seller):
            comp = p.Compensation(payer=by, payee=a.seller if by == a.buyer else a.buyer, amount=a.price)
        body: dict[str, Any] = {"award_id": a.award_id, "state": state, "reason": reason}
        if comp is not None:
            body["compensation"] = comp.model_dump()
        for e in (a.buyer, a.seller):
            if notify or e != by or comp is not None:  # whoever pays is told what, even if it cancelled
                self._send(e, "cancel", p.Cancel(award_id=a.award_id, reason=reason, compensation=comp))
        self._ledger("cancellation", by, [a.buyer, a.seller], False, body)
        if was == "binding":
            self._ledger("contract_cancelled", HOST, [a.buyer, a.seller], True, {"award_id": a.award_id})

    # -- writing -----------------------------------------------------------------------------------------------------

    def _forward(self, to: str, env: Envelope) -> None:
        if to in self.left:
            return
        self.r.xadd(self.keys.inbox(to), {"msg": env.wire()})
        self.messages += 1

    def _send(self, to: str, kind: str, body: p.Body) -> None:
        self.r.xadd(self.keys.inbox(to), {"msg": self.signer.sign(kind, body.model_dump(), to).wire()})

    def _ledger(self, kind: str, actor: str, parties: list[str], public: bool, body: dict[str, Any]) -> None:
        """One ledger entry; copies to the views of the parties (and, if public, of every member)."""
        self.entries += 1
        entry = {"n": self.entries, "ts": _now(), "session": self.session, "kind": kind, "actor": actor,
                 "parties": parties, "public": public, "body": body}
        text = json.dumps(entry, ensure_ascii=False)
        self.r.xadd(self.keys.ledger, {"entry": text})
        for e in (self.members if public else parties):
            if e in self.members:
                self.r.xadd(self.keys.view(e), {"entry": text})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
