"""An enterprise's agent in a sharing session: buys slots for its late operations, sells its spare capacity.

It connects with its own ACL user only, keeps its orders, customers and schedule to itself, and
decides with its own CP-SAT model: a seller bids only if the extra operation fits with its own
weighted tardiness no worse (the slot it promises is then reserved until the bid lapses or is
lost); a buyer awards the bid that saves it the most tardiness cost net of the price, and only if
that saving is positive. A binding contract enters both plans: the buyer's operation becomes an
external dependency (pinned to the window from its input being ready to the promised completion),
the seller gets an order with that release and the promised completion as a hard deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field

from paichan.checker import check
from paichan.domain import Mode, Operation, Order, Pin, Problem, Resource, Schedule, ScheduledOperation
from paichan.sharing import protocol as p
from paichan.sharing.acl import Keys, entries
from paichan.sharing.host import GROUP
from paichan.sharing.model import EnterpriseSpec, OfferSpec
from paichan.sharing.signing import HOST, Envelope, Rejected, Signer, Verifier, parse
from paichan.solver import SolveParams, solve

Progress = Callable[[str], None]
BUYER_SHARE = 0.9  # a buyer offers at most this share of what a slot would save it (it keeps the rest)
OWN_SCALE = 1000  # a seller's own orders outweigh an extra operation's earliness in its evaluation


class AgentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    solve_time: float = Field(default=1.0, gt=0)  # seconds per CP-SAT evaluation
    baseline_time: float = Field(default=5.0, gt=0)  # the plan without sharing: the reference every gain is from
    polish_time: float = Field(default=3.0, ge=0)  # once done buying: one longer solve of the plan as it stands
    answer_wait: float = Field(default=5.0, gt=0)  # a buyer waits this long for bids after routing
    bid_validity: float = Field(default=30.0, gt=0)  # a bid (and the capacity it reserves) lapses after this
    accept_wait: float = Field(default=120.0, gt=0)  # only if the host never answers (it lapses awards itself)
    heartbeat: float = Field(default=1.0, gt=0)
    bids_evaluated: int = Field(default=3, ge=1)  # the cheapest bids a buyer evaluates with its model


class Command(BaseModel):
    """What `paichan session offer|request|leave` asks a running agent to do."""

    model_config = ConfigDict(extra="forbid")

    kind: str  # offer | request | leave
    offer: OfferSpec | None = None
    operation: str | None = None  # request: the enterprise's own operation ("ORDER/STEP")
    latest_finish: int | None = None
    max_price: float | None = None


class Bought(BaseModel):
    """A slot bought: operation ``op`` runs outside from ``ready`` and is done by ``completion``."""

    award_id: str
    op: str
    ready: int
    completion: int
    price: float
    seller: str


class Sold(BaseModel):
    """Capacity sold (or reserved by an open bid): one operation from ``release`` to ``completion``."""

    ref: str  # award id, or bid id while tentative
    request_id: str
    capability: str
    duration: int
    release: int
    completion: int
    price: float
    buyer: str
    valid_until: float = 0.0


class Outcome(BaseModel):
    """One side of the KPIs: tardiness and money, as the enterprise itself measures them."""

    weighted_tardiness: int
    late_orders: int
    tardiness_cost: float
    revenue: float
    cost: float
    compensation: float  # received minus paid
    net_cost: float  # tardiness cost + cost - revenue - compensation
    contracts_bought: int
    contracts_sold: int


class EnterpriseResult(BaseModel):
    enterprise: str
    with_sharing: Outcome
    without_sharing: Outcome
    schedule: Schedule
    problem: Problem
    messages_sent: int
    rejected: list[str]
    evaluations: int
    decisions: list[dict[str, Any]] = Field(default_factory=list)  # private: why each request ended as it did


class _Ask:
    def __init__(self, request: p.Request, op: str) -> None:
        self.request = request
        self.op = op
        self.asked: int | None = None
        self.answers = 0
        self.bids: list[tuple[str, p.Bid]] = []
        self.routed_at = 0.0
        self.award: p.Award | None = None
        self.awarded_at = 0.0
        self.plan: Schedule | None = None
        self.bought_then: set[str] = set()  # our purchases when we awarded (to notice one cancelled meanwhile)


class EnterpriseAgent:
    def __init__(self, spec: EnterpriseSpec, url: str, session: str, params: AgentParams | None = None,
                 progress: Progress | None = None) -> None:
        self.spec = spec
        self.id = spec.id
        self.session = session
        self.keys = Keys(session)
        self.params = params or AgentParams()
        self.progress = progress or (lambda _m: None)
        self.r = redis.Redis.from_url(url, socket_connect_timeout=5)
        self.signer = Signer(spec.id, session)
        self.inbox_verifier = Verifier(session, {})
        self.public_verifier = Verifier(session, {})
        self.base = spec.problem()
        self.bought: dict[str, Bought] = {}
        self.sold: dict[str, Sold] = {}
        self.tentative: dict[str, Sold] = {}
        self.offers: dict[str, list[p.Offer]] = {}  # seller -> its public offers
        self.public_last = "0-0"
        self.ask: _Ask | None = None
        self.tried: set[str] = set()
        self.requests_sent = 0
        self.messages_sent = 0
        self.evaluations = 0
        self.compensation = 0.0
        self.rejected: list[str] = []
        self.decisions: list[dict[str, Any]] = []  # each request's outcome, for the enterprise's own review
        self.renamed: dict[str, str] = {}  # bid id -> award id, for plans made while the bid was open
        self.withdrawn: set[str] = set()  # awards we stopped waiting for (their compensation is still ours)
        self.manual: list[Command] = []  # requests a planner queued, served before the automatic ones
        self.auto_buy = True
        self.polished = False
        self.closed = False
        self.started = False  # the host says everyone has joined and published offers
        self.last_beat = 0.0
        base = self._solve(self.base, None, self.params.baseline_time)
        if base is None:
            raise RuntimeError(f"{self.id}: its own orders have no feasible schedule")
        self.baseline = base
        self.plan = base

    # -- plans -------------------------------------------------------------------------------------------------------

    def problem(self, extra_sold: list[Sold] | None = None, extra_bought: Bought | None = None,
                candidate: Sold | None = None) -> Problem:
        """The enterprise's problem with its contracts (and a bid or request under evaluation)."""
        bought = {b.op: b for b in [*self.bought.values(), *([extra_bought] if extra_bought else [])]}
        resources = list(self.base.resources) + [Resource(id=f"ext-{b.award_id}") for b in bought.values()]
        scale = OWN_SCALE if candidate is not None else 1
        orders: list[Order] = []
        for o in self.base.orders:
            ops = []
            for op in o.operations:
                b = bought.get(op.id)
                if b is not None:
                    res = f"ext-{b.award_id}"
                    op = op.model_copy(update={"modes": [Mode(resource=res, duration=b.completion - b.ready)],
                                               "pin": Pin(resource=res, start=b.ready, reason="bought slot")})
                ops.append(op)
            orders.append(o.model_copy(update={"operations": ops, "priority": o.priority * scale}))
        for s in [*self.sold.values(), *self.tentative.values(), *(extra_sold or [])]:
            orders.append(self._sold_order(s, priority=0, due=None, deadline=s.completion))
        if candidate is not None:
            orders.append(self._sold_order(candidate, priority=1, due=candidate.release + candidate.duration,
                                           deadline=candidate.completion))
        return self.base.model_copy(update={"resources": resources, "orders": orders})

    def _sold_order(self, s: Sold, priority: int, due: int | None, deadline: int) -> Order:
        return Order(id=f"x-{s.ref}", release=s.release, due=due, deadline=deadline, priority=priority,
                     operations=[Operation(id=f"x-{s.ref}/0", family=s.capability,
                                           modes=[Mode(resource=r, duration=s.duration)
                                                  for r in self.spec.capable(s.capability)])])

    def _solve(self, problem: Problem, reference: Schedule | None,
               time_limit: float | None = None) -> Schedule | None:
        self.evaluations += 1
        res = solve(problem, SolveParams(time_limit=time_limit or self.params.solve_time, workers=1,
                                         reference=reference, decompose=False))
        if res.schedule is None or not check(problem, res.schedule).ok:
            return None
        return res.schedule

    def _replan(self, hint: Schedule) -> Schedule:
        """A plan for the contracts as they are now, from ``hint`` (an operation taken back in house is
        placed again). Always exists: own orders have no deadlines; sold ones keep their feasible slots."""
        for limit in (self.params.solve_time, self.params.baseline_time, 4 * self.params.baseline_time):
            plan = self._solve(self.problem(), hint, limit)
            if plan is not None:
                return plan
        raise RuntimeError(f"{self.id}: no plan for its contracts within {5 * self.params.baseline_time:g} s")

    def own_wt(self, schedule: Schedule) -> tuple[int, int]:
        """(weighted tardiness, late orders) of the enterprise's own orders in ``schedule``."""
        ends: dict[str, int] = {}
        for s in schedule.operations:
            ends[s.order] = max(ends.get(s.order, 0), s.end)
        wt = late = 0
        for o in self.base.orders:
            t = max(0, ends.get(o.id, 0) - (o.due if o.due is not None else ends.get(o.id, 0)))
            wt += o.priority * t
            late += t > 0
        return wt, late

    def _without(self, schedule: Schedule, order: str) -> Schedule:
        return Schedule(problem=schedule.problem, operations=[s for s in schedule.operations if s.order != order])

    # -- messaging ---------------------------------------------------------------------------------------------------

    def send(self, kind: str, body: p.Body, to: str = HOST) -> None:
        env = self.signer.sign(kind, body.model_dump(), to)
        self.r.xadd(self.keys.outbox(self.id), {"msg": env.wire()})
        self.messages_sent += kind != "heartbeat"

    def join(self) -> None:
        self.send("join", p.Join(public_key=self.signer.public_b64))
        for f in self.spec.offers:
            self._publish(f)
        self.progress(f"{self.id}: joined; own weighted tardiness {self.own_wt(self.plan)[0]}")

    def _publish(self, f: OfferSpec) -> None:
        """Put an offer on the market: everything but its floor, which stays ours."""
        self.send("offer", p.Offer(offer_id=uuid.uuid4().hex[:12], capabilities=f.capabilities, window=f.window,
                                   price_per_minute=f.price_per_minute, min_lot=f.min_lot), to="*")

    def _verify(self, verifier: Verifier, env: Envelope) -> bool:
        if env.sender not in verifier.keys:
            registry: dict[bytes, bytes] = self.r.hgetall(self.keys.registry)  # type: ignore[assignment]
            verifier.keys.update({k.decode(): v.decode() for k, v in registry.items()})
        try:
            verifier.check(env)
            if env.to not in (self.id, "*"):
                raise Rejected("impersonated", f"{env.kind} from {env.sender} was addressed to {env.to}, not us")
            return True
        except Rejected as e:
            self.rejected.append(f"{e.reason}: {e.detail}")
            self.progress(f"{self.id}: rejected {e}")
            return False

    def poll(self, block_ms: int = 100) -> int:
        """Read the public stream and the inbox once; handle what arrived; returns how many messages."""
        n = 0
        for _, items in entries(self.r.xread({self.keys.public: self.public_last}, count=100)):
            for entry_id, fields in items:
                self.public_last = entry_id
                n += 1
                try:
                    env = parse(fields[b"msg"])
                except Rejected as e:
                    self.rejected.append(str(e))
                    continue
                if self._verify(self.public_verifier, env):
                    self._on_public(env)
        got = self.r.xreadgroup(GROUP, self.id, {self.keys.inbox(self.id): ">"}, count=50, block=block_ms or None)
        for stream, items in entries(got):
            for entry_id, fields in items:
                n += 1
                try:
                    env = parse(fields.get(b"msg", b""))
                    if self._verify(self.inbox_verifier, env):
                        self._on_inbox(env)
                except Rejected as e:
                    self.rejected.append(str(e))
                except p.BadBody as e:
                    self.rejected.append(f"malformed: {e}")
                self.r.xack(stream, GROUP, entry_id)
                self._beat()  # a batch of requests takes a solve each: stay visibly alive
        return n

    def _on_public(self, env: Envelope) -> None:
        if env.kind == "offer" and env.sender != self.id:
            body = p.body("offer", env.body)
            assert isinstance(body, p.Offer)
            self.offers.setdefault(env.sender, []).append(body)

    def _on_inbox(self, env: Envelope) -> None:
        body = p.body(env.kind, env.body)
        handler = getattr(self, f"_on_{env.kind}", None)
        if handler is not None:
            handler(env, body)

    # -- seller side -------------------------------------------------------------------------------------------------

    def _offer_for(self, req: p.Request) -> OfferSpec | None:
        """Our cheapest offer that covers the request (capability, lot, a window that overlaps); we keep to it."""
        fits = [f for f in self.spec.offers if req.capability in f.capabilities and self.spec.capable(req.capability)
                and f.window[0] < req.latest_finish and f.window[1] > req.earliest_start and req.quantity >= f.min_lot]
        return min(fits, key=lambda f: f.price_per_minute) if fits else None

    def _on_request(self, env: Envelope, req: p.Body) -> None:
        assert isinstance(req, p.Request)
        self._lapse_bids()
        offer = self._offer_for(req)
        # while our own purchase is in flight our plan is about to change: no new promises until it settles
        if offer is None or self.ask is not None:
            self.send("decline", p.Decline(request_id=req.request_id), to=env.sender)
            return
        # the list price, or the buyer's maximum if that is lower but not below our floor
        price = round(min(offer.price_per_minute * req.duration, req.max_price), 2)
        release, latest = max(req.earliest_start, offer.window[0]), min(req.latest_finish, offer.window[1])
        if price < round(offer.floor() * req.duration, 2) or latest - release < req.duration:
            self.send("decline", p.Decline(request_id=req.request_id), to=env.sender)
            return
        bid_id = uuid.uuid4().hex[:12]
        cand = Sold(ref=bid_id, request_id=req.request_id, capability=req.capability, duration=req.duration,
                    release=release, completion=latest, price=price, buyer=env.sender)
        before, _ = self.own_wt(self.plan)
        sched = self._solve(self.problem(candidate=cand), self.plan)
        if sched is None or self.own_wt(sched)[0] > before:
            self.send("decline", p.Decline(request_id=req.request_id), to=env.sender)
            return
        end = next(s.end for s in sched.operations if s.order == f"x-{bid_id}")
        cand.completion = end
        cand.valid_until = time.time() + self.params.bid_validity
        self.tentative[bid_id] = cand
        self.plan = sched
        self.send("bid", p.Bid(request_id=req.request_id, bid_id=bid_id, price=price, completion=end,
                               valid_until=cand.valid_until), to=env.sender)

    def _lapse_bids(self) -> None:
        now = time.time()
        for bid_id, s in list(self.tentative.items()):
            if s.valid_until < now:
                self._drop_tentative(bid_id)

    def _drop_tentative(self, bid_id: str) -> None:
        self.tentative.pop(bid_id, None)
        self.plan = self._without(self.plan, f"x-{bid_id}")

    def _on_award(self, env: Envelope, award: p.Body) -> None:
        assert isinstance(award, p.Award)
        s = self.tentative.pop(award.bid_id, None)
        if s is None or award.seller != self.id or s.buyer != env.sender or s.valid_until < time.time():
            if s is not None:
                self.plan = self._without(self.plan, f"x-{s.ref}")
            self.send("refuse", p.Refuse(award_id=award.award_id, reason="the bid has lapsed"), to=env.sender)
            return
        # the reservation becomes the contract: same operation, renamed after the award
        self.plan = Schedule(problem=self.plan.problem, operations=[
            o.model_copy(update={"order": f"x-{award.award_id}", "operation": f"x-{award.award_id}/0"})
            if o.order == f"x-{s.ref}" else o for o in self.plan.operations])
        self.renamed[s.ref] = award.award_id
        s.ref = award.award_id
        self.sold[award.award_id] = s
        self.send("accept", p.Accept(award_id=award.award_id), to=env.sender)
        self.progress(f"{self.id}: sold a {s.capability} slot ({s.duration} min, done by {s.completion}) "
                      f"for {s.price:g}")

    def _on_request_closed(self, env: Envelope, body: p.Body) -> None:
        assert isinstance(body, p.RequestClosed)
        for bid_id, s in list(self.tentative.items()):
            if s.request_id == body.request_id:
                self._drop_tentative(bid_id)

    def _on_cancel(self, env: Envelope, body: p.Body) -> None:
        """The other side (or the host, for a member that left) cancelled an award: undo our part."""
        assert isinstance(body, p.Cancel)
        c = body.compensation
        ours = {*self.sold, *self.bought, *self.withdrawn}
        if c is not None and self.id in (c.payer, c.payee) and body.award_id in ours:
            self.compensation += c.amount if c.payee == self.id else -c.amount
        if body.award_id in self.sold:
            self.sold.pop(body.award_id)
            self.plan = self._without(self.plan, f"x-{body.award_id}")
        elif body.award_id in self.bought:
            b = self.bought.pop(body.award_id)
            self.plan = self._replan(self.plan)
            self.tried.add(b.op)
        elif self.ask is not None and self.ask.award is not None and self.ask.award.award_id == body.award_id:
            self.ask = None  # our proposed award lapsed before the seller accepted

    def _on_closed(self, env: Envelope, body: p.Body) -> None:
        self.closed = True

    def _on_started(self, env: Envelope, body: p.Body) -> None:
        self.started = True

    # -- buyer side --------------------------------------------------------------------------------------------------

    def _candidates(self) -> list[tuple[str, str, int, int, int]]:
        """(op, capability, duration, ready, latest finish) of in-house operations worth asking the market for.

        First the operations of late orders, worst order first, to be done before they would be in
        house. Then, on the capabilities those late operations need, on-time orders' operations, earliest
        first: giving one of them away frees the line for a late one (the buyer's model judges whether it
        pays); they may be done as late as their order can still be on time.
        """
        if self.own_wt(self.plan)[0] == 0:
            return []
        ends: dict[str, int] = {}
        by_op = self.plan.by_operation()
        for s in self.plan.operations:
            ends[s.order] = max(ends.get(s.order, 0), s.end)
        offered = {c for offers in self.offers.values() for f in offers for c in f.capabilities}
        bought = {b.op for b in self.bought.values()}
        late = sorted((o for o in self.base.orders if o.due is not None and ends.get(o.id, 0) > o.due),
                      key=lambda o: -o.priority * (ends[o.id] - (o.due or 0)))
        out: list[tuple[str, str, int, int, int]] = []
        for o in late:
            prev_end = o.release
            for op in o.operations:
                s = by_op[op.id]
                if op.id not in self.tried and op.id not in bought and op.family in offered:
                    out.append((op.id, op.family or "", op.modes[0].duration, prev_end, s.end - 1))
                prev_end = s.end
        needed = {op.family for o in late for op in o.operations if op.id not in bought}
        helpers: list[tuple[int, tuple[str, str, int, int, int]]] = []
        for o in self.base.orders:
            if o in late or o.due is None:
                continue
            prev_end = o.release
            for k, op in enumerate(o.operations):
                s = by_op[op.id]
                rest = sum(x.modes[0].duration for x in o.operations[k + 1:])
                if op.id not in self.tried and op.id not in bought and op.family in offered & needed:
                    helpers.append((s.start, (op.id, op.family or "", op.modes[0].duration, prev_end,
                                              max(s.end - 1, o.due - rest))))
                prev_end = s.end
        return out + [c for _, c in sorted(helpers)]

    def buying_done(self) -> bool:
        if not self.started or self.ask is not None or self.manual:
            return False
        return not self.auto_buy or self.requests_sent >= self.spec.buying.max_requests or not self._candidates()

    def _buy_step(self) -> None:
        if not self.started:
            return
        if self.ask is None and self.manual:
            self._manual_request(self.manual.pop(0))
            return
        if self.ask is None:
            if self.requests_sent >= self.spec.buying.max_requests or not self.auto_buy:
                return
            cands = self._candidates()
            if not cands:
                return
            op, cap, duration, ready, latest = cands[0]
            self.tried.add(op)
            if latest - ready < duration:
                return
            worth = self._worth(op, ready, duration)
            cap_price = self.spec.buying.max_price_per_minute * duration
            if worth <= 0:
                self.decisions.append({"operation": op, "asked": 0, "bids": 0, "gains": [], "awarded": False,
                                       "why": "no saving even if done at once outside"})
                return
            order = next(o for o in self.base.orders if any(x.id == op for x in o.operations))
            req = p.Request(request_id=uuid.uuid4().hex[:12], capability=cap, duration=duration,
                            quantity=int(order.quantity), earliest_start=ready, latest_finish=latest,
                            max_price=round(min(cap_price, BUYER_SHARE * worth), 2))
            self.ask = _Ask(req, op)
            self.requests_sent += 1
            self.send("request", req, to="*")
            return
        a = self.ask
        now = time.time()
        if a.award is not None:
            # the host lapses an award the seller does not accept in time and tells us (a cancel); only if
            # the host itself is gone do we stop waiting, and an accept that still comes is then cancelled
            if now - a.awarded_at > self.params.accept_wait:
                self.withdrawn.add(a.award.award_id)
                self.ask = None
            return
        if a.asked is None:
            return
        if a.answers < a.asked and now - a.routed_at < self.params.answer_wait:
            return
        self._decide(a)

    def _worth(self, op: str, ready: int, duration: int) -> float:
        """What ``op`` done outside at once (from ``ready``, in ``duration``) would save us: our valuation."""
        trial = Bought(award_id="worth", op=op, ready=ready, completion=ready + duration, price=0.0, seller="-")
        ref = Schedule(problem=self.plan.problem, operations=[
            ScheduledOperation(operation=op, order=s.order, resource="ext-worth", mode=0, start=ready,
                               end=ready + duration) if s.operation == op else s for s in self.plan.operations])
        sched = self._solve(self.problem(extra_bought=trial), ref)
        if sched is None:
            return 0.0
        return (self.own_wt(self.plan)[0] - self.own_wt(sched)[0]) * self.spec.tardiness_cost

    def _polish(self) -> None:
        """Once done buying, re-solve the plan as it stands (contracts fixed) for longer, keeping it if better.

        The plans made while trading come from short evaluations; a planner would re-optimise the final
        one. Open bids reserve capacity, so it waits until none is open.
        """
        if self.polished or self.params.polish_time <= 0 or self.tentative or not self.buying_done():
            return
        if self.own_wt(self.plan)[0] == 0:
            return  # nothing to gain (and a seller should answer requests, not solve)
        self.polished = True
        better = self._solve(self.problem(), self.plan, self.params.polish_time)
        if better is not None and self.own_wt(better)[0] < self.own_wt(self.plan)[0]:
            self.progress(f"{self.id}: final plan re-solved: weighted tardiness {self.own_wt(self.plan)[0]} -> "
                          f"{self.own_wt(better)[0]}")
            self.plan = better

    def _manual_request(self, cmd: Command) -> None:
        by_op = self.plan.by_operation()
        order = next((o for o in self.base.orders if any(x.id == cmd.operation for x in o.operations)), None)
        if order is None or cmd.operation in {b.op for b in self.bought.values()}:
            self.progress(f"{self.id}: request ignored: {cmd.operation} is not an in-house operation of ours")
            return
        k = [x.id for x in order.operations].index(str(cmd.operation))
        op = order.operations[k]
        ready = by_op[order.operations[k - 1].id].end if k else order.release
        duration = op.modes[0].duration
        latest = cmd.latest_finish if cmd.latest_finish is not None else by_op[op.id].end - 1
        max_price = cmd.max_price or round(self.spec.buying.max_price_per_minute * duration, 2)
        try:
            req = p.Request(request_id=uuid.uuid4().hex[:12], capability=op.family or "", duration=duration,
                            quantity=int(order.quantity), earliest_start=ready, latest_finish=latest,
                            max_price=max_price)
        except ValueError as e:
            self.progress(f"{self.id}: request for {cmd.operation} not sent: {str(e).splitlines()[0]}")
            return
        self.ask = _Ask(req, op.id)
        self.requests_sent += 1
        self.send("request", req, to="*")

    def _decide(self, a: _Ask) -> None:
        """Evaluate the cheapest bids with our own model; award the best net saving, if any."""
        cur_wt, _ = self.own_wt(self.plan)
        best: tuple[float, str, p.Bid, Schedule] | None = None
        gains: list[float] = []
        cheapest = sorted(a.bids, key=lambda sb: (sb[1].price, sb[1].completion))[:self.params.bids_evaluated]
        for seller, bid in cheapest:
            if bid.valid_until < time.time() or bid.completion > a.request.latest_finish:
                continue
            trial = Bought(award_id=f"eval-{bid.bid_id}", op=a.op, ready=a.request.earliest_start,
                           completion=bid.completion, price=bid.price, seller=seller)
            problem = self.problem(extra_bought=trial)
            ref = Schedule(problem=self.plan.problem, operations=[
                ScheduledOperation(operation=a.op, order=s.order, resource=f"ext-{trial.award_id}", mode=0,
                                   start=trial.ready, end=trial.completion) if s.operation == a.op else s
                for s in self.plan.operations])
            sched = self._solve(problem, ref)
            if sched is None:
                continue
            gain = (cur_wt - self.own_wt(sched)[0]) * self.spec.tardiness_cost - bid.price
            gains.append(round(gain, 2))
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, seller, bid, sched)
        self.decisions.append({"operation": a.op, "asked": a.asked, "bids": len(a.bids), "gains": gains,
                               "awarded": best is not None})
        if best is None:
            self.send("request_closed", p.RequestClosed(request_id=a.request.request_id), to="*")
            self.ask = None
            self.progress(f"{self.id}: no award for {a.op}: {len(a.bids)} bids of {a.asked} asked; net gains "
                          f"{gains or '-'}")
            return
        gain, seller, bid, sched = best
        award = p.Award(award_id=uuid.uuid4().hex[:12], request_id=a.request.request_id, bid_id=bid.bid_id,
                        seller=seller)
        a.award, a.awarded_at = award, time.time()
        a.bought_then = set(self.bought)
        # the evaluated plan, renamed after the award
        a.plan = Schedule(problem=sched.problem, operations=[
            s.model_copy(update={"resource": f"ext-{award.award_id}"}) if s.operation == a.op else s
            for s in sched.operations])
        self.send("award", award, to=seller)
        self.send("request_closed", p.RequestClosed(request_id=a.request.request_id), to="*")

    def _on_routed(self, env: Envelope, body: p.Body) -> None:
        assert isinstance(body, p.Routed)
        if self.ask is not None and self.ask.request.request_id == body.request_id:
            self.ask.asked = body.asked
            self.ask.routed_at = time.time()

    def _on_bid(self, env: Envelope, body: p.Body) -> None:
        assert isinstance(body, p.Bid)
        if self.ask is not None and self.ask.request.request_id == body.request_id and self.ask.award is None:
            self.ask.bids.append((env.sender, body))
            self.ask.answers += 1

    def _on_decline(self, env: Envelope, body: p.Body) -> None:
        assert isinstance(body, p.Decline)
        if self.ask is not None and self.ask.request.request_id == body.request_id:
            self.ask.answers += 1

    def _on_accept(self, env: Envelope, body: p.Body) -> None:
        assert isinstance(body, p.Accept)
        if body.award_id in self.withdrawn:  # we stopped waiting for it: break it openly (we owe the price)
            self.send("cancel", p.Cancel(award_id=body.award_id, reason="accepted after the buyer gave up"),
                      to=env.sender)
            return
        a = self.ask
        if a is None or a.award is None or a.award.award_id != body.award_id or a.plan is None:
            return
        bid = next(b for s, b in a.bids if b.bid_id == a.award.bid_id)
        self.bought[body.award_id] = Bought(award_id=body.award_id, op=a.op, ready=a.request.earliest_start,
                                            completion=bid.completion, price=bid.price, seller=env.sender)
        plan = self._reconciled(a.plan)
        if set(self.bought) != a.bought_then | {body.award_id}:
            plan = self._replan(plan)  # a purchase was cancelled meanwhile: the awarded plan assumed it
        self.plan = plan
        self.ask = None
        self.tried = {b.op for b in self.bought.values()}  # the plan changed: earlier refusals may not hold now
        self.progress(f"{self.id}: bought a {a.request.capability} slot from {env.sender} for {bid.price:g}; "
                      f"own weighted tardiness now {self.own_wt(self.plan)[0]}")

    def _reconciled(self, plan: Schedule) -> Schedule:
        """``plan`` (made when we awarded) brought up to date with what we sold or dropped since.

        Operations on the external resource of a purchase cancelled since are dropped (``_replan``
        places them again).
        """
        live = {f"x-{s.ref}" for s in [*self.sold.values(), *self.tentative.values()]}
        ext = {f"ext-{aid}" for aid in self.bought}
        ops = []
        for s in plan.operations:
            if s.resource.startswith("ext-") and s.resource not in ext:
                continue
            if s.order.startswith("x-"):
                ref = self.renamed.get(s.order[2:], s.order[2:])
                s = s.model_copy(update={"order": f"x-{ref}", "operation": f"x-{ref}/0"})
                if s.order not in live:
                    continue
            ops.append(s)
        return Schedule(problem=plan.problem, operations=ops)

    def _on_refuse(self, env: Envelope, body: p.Body) -> None:
        assert isinstance(body, p.Refuse)
        if self.ask is not None and self.ask.award is not None and self.ask.award.award_id == body.award_id:
            self.ask = None

    # -- running -----------------------------------------------------------------------------------------------------

    def step(self, block_ms: int = 100) -> None:
        try:
            self.poll(block_ms)
            self._commands()
            if self.closed:
                return
            self._lapse_bids()
            self._buy_step()
            self._polish()
            self._beat()
        except redis.AuthenticationError:
            self.closed = True  # the host revoked our user (ACL DELUSER also drops the connection): session over
        except redis.ConnectionError:
            # ACL DELUSER drops our connection mid-command; a new one then says whether we were revoked
            try:
                self.r.ping()
            except redis.AuthenticationError:
                self.closed = True
                return
            raise

    def run(self, timeout: float = 600.0) -> EnterpriseResult:
        """Join, trade until the host closes the session (or ``timeout``), then report."""
        self.join()
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.step()
        return self.result()

    def cancel_contract(self, award_id: str, reason: str = "") -> None:
        """Break a binding contract: the other side is told and undoes its part; we owe it the price."""
        if award_id in self.sold:
            s = self.sold.pop(award_id)
            self.plan = self._without(self.plan, f"x-{award_id}")
            self.compensation -= s.price
            other = s.buyer
        elif award_id in self.bought:
            b = self.bought.pop(award_id)
            self.compensation -= b.price
            self.plan = self._replan(self.plan)
            self.tried.add(b.op)
            other = b.seller
        else:
            raise KeyError(f"{self.id} has no contract {award_id}")
        self.send("cancel", p.Cancel(award_id=award_id, reason=reason or f"cancelled by {self.id}"), to=other)

    def _beat(self) -> None:
        if not self.closed and time.time() - self.last_beat > self.params.heartbeat:
            self.send("heartbeat", p.Heartbeat())
            self.last_beat = time.time()

    def _commands(self) -> None:
        """Commands queued by `paichan session offer|request` (in our own keys): offer, request, leave."""
        self.r.set(self.keys.priv(self.id, "alive"), "1", ex=5)
        while True:
            raw = self.r.lpop(self.keys.priv(self.id, "commands"))
            if raw is None:
                return
            try:
                cmd = Command.model_validate_json(raw)  # type: ignore[arg-type]
            except ValueError as e:
                self.progress(f"{self.id}: ignored a malformed command: {str(e).splitlines()[0]}")
                continue
            if cmd.kind == "offer" and cmd.offer is not None:
                self.spec.offers.append(cmd.offer)
                self._publish(cmd.offer)
            elif cmd.kind == "request" and cmd.operation:
                self.manual.append(cmd)
            elif cmd.kind == "leave":
                self.leave("the planner left")
            self.progress(f"{self.id}: command {cmd.kind} taken")

    def leave(self, reason: str = "") -> None:
        """Leave the session: the host cancels our contracts; we owe each counterpart its price and undo our part."""
        self.send("leave", p.Leave(reason=reason))
        self.compensation -= sum(s.price for s in self.sold.values()) + sum(b.price for b in self.bought.values())
        for ref in [*self.sold, *self.tentative]:
            self.plan = self._without(self.plan, f"x-{ref}")
        had_bought = bool(self.bought)
        self.sold.clear()
        self.tentative.clear()
        self.bought.clear()
        if had_bought:
            self.plan = self._replan(self.plan)
        self.closed = True

    def status(self) -> dict[str, Any]:
        return {"enterprise": self.id, "buying_done": self.buying_done(), "closed": self.closed,
                "bought": len(self.bought), "sold": len(self.sold), "tentative": len(self.tentative)}

    def result(self) -> EnterpriseResult:
        problem = self.problem()
        report = check(problem, self.plan)
        if not report.ok:
            raise RuntimeError(f"{self.id}: final plan fails the checker: {report.violations[:3]}")
        return EnterpriseResult(
            enterprise=self.id, with_sharing=self._outcome(self.plan, True),
            without_sharing=self._outcome(self.baseline, False), schedule=self.plan, problem=problem,
            messages_sent=self.messages_sent, rejected=self.rejected, evaluations=self.evaluations,
            decisions=self.decisions)

    def _outcome(self, schedule: Schedule, sharing: bool) -> Outcome:
        wt, late = self.own_wt(schedule)
        revenue = sum(s.price for s in self.sold.values()) if sharing else 0.0
        cost = sum(b.price for b in self.bought.values()) if sharing else 0.0
        comp = self.compensation if sharing else 0.0
        tc = wt * self.spec.tardiness_cost
        return Outcome(weighted_tardiness=wt, late_orders=late, tardiness_cost=round(tc, 2), revenue=round(revenue, 2),
                       cost=round(cost, 2), compensation=round(comp, 2), net_cost=round(tc + cost - revenue - comp, 2),
                       contracts_bought=len(self.bought) if sharing else 0,
                       contracts_sold=len(self.sold) if sharing else 0)
