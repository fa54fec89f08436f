"""LineAgent: owns its machines, calendar and local schedule; bids, commits, replans.

Bidding is a tentative insertion into the line's current plan: each routing
step goes into the earliest gap of the best machine of its type (calendar and
breakdowns respected, operations may pause over breaks), after any material
date its supplier promised. When that gap insertion would be late, the line
also solves the insertion with the CP-SAT core (its committed orders may move,
other open bids stay fixed) and bids that plan if it is cheaper counting the
tardiness it adds to the orders it displaces; the bid then says how much it
disturbs the current plan. The insertion (and the displaced orders' new places)
is held as a reservation until the plant awards or rejects, so concurrent bids
do not promise the same capacity twice; one displacing bid is open at a time.
Committed work is re-optimised with the CP-SAT core (minimal change: weighted
tardiness plus a stability term against the current plan) when the planner
asks, after a breakdown and after material comes late; orders whose
operations moved are reported to their plant.
"""


from __future__ import annotations

from typing import Any

from paichan.agents.base import Agent, handles
from paichan.agents.messages import (
    AtpConfirm,
    AtpPromise,
    AtpRequest,
    AtpReserve,
    Award,
    Bid,
    CallForProposals,
    Confirm,
    MachineDown,
    OrderSpec,
    PlannedOp,
    Refuse,
    Reject,
    Replan,
    Revoke,
    ScheduleUpdate,
    Withdraw,
)
from paichan.agents.scenario import LineSpec, machine_id, step_minutes
from paichan.agents.state import Displacement, LineOrder, LineState, PlacedOp
from paichan.bus.envelope import Envelope
from paichan.domain import (
    Actual,
    Calendar,
    Downtime,
    DowntimeKind,
    Mode,
    Objective,
    ObjectiveName,
    Operation,
    OperationStatus,
    Order,
    Problem,
    Resource,
    Schedule,
    ScheduledOperation,
    merge_windows,
)
from paichan.solver.placement import gap_start, place


class LineAgent(Agent):
    kind = "line"
    state_model = LineState
    st: LineState

    def __init__(self, plant: str, spec: LineSpec, calendar: Calendar, suppliers: dict[str, str], horizon: int,
                 replan_time_limit: float = 2.0, bid_ttl_s: float = 60.0, bid_time_limit: float = 0.3) -> None:
        super().__init__(f"{plant}/{spec.id}")
        self.plant = plant
        self.spec = spec
        self.calendar = calendar
        self.suppliers = suppliers  # material -> supplier agent id
        self.horizon = horizon
        self.replan_time_limit = replan_time_limit
        self.bid_ttl_s = bid_ttl_s  # an unanswered bid's reservation is dropped after this
        self.bid_time_limit = bid_time_limit  # CP-SAT insertion for late bids; 0: gap insertion only
        self.replan_debounce_s = 0.3
        self.types = {m.type for m in spec.machines}
        self.st = LineState()  # everything committed to the bus (orders, breakdowns, clock, counters)
        self._windows: dict[str, list[tuple[int, int]]] = {}

    @property
    def orders(self) -> dict[str, LineOrder]:
        """Orders waiting for material dates, bid for (held) or committed."""
        return self.st.orders

    @property
    def stale_awards(self) -> int:
        return self.st.stale_awards

    # ----------------------------------------------------------- persistence
    def load(self, state: dict[str, Any]) -> None:
        super().load(state)
        self._windows = {}

    # ------------------------------------------------------------- timelines
    def windows(self, mid: str) -> list[tuple[int, int]]:
        if mid not in self._windows:
            own = self.st.downtimes.get(mid, [])
            self._windows[mid] = merge_windows(self.calendar.unavailable(self.horizon) + own)
        return self._windows[mid]

    def machine_ids(self) -> list[tuple[str, str, float]]:
        return [(machine_id(self.plant, self.spec.id, m.id), m.type, m.speed) for m in self.spec.machines]

    def _busy(self, skip: str | None = None) -> dict[str, list[tuple[int, int]]]:
        """Per machine, the time taken by committed work, open bids and where open bids would move work."""
        busy: dict[str, list[tuple[int, int]]] = {mid: [] for mid, _, _ in self.machine_ids()}
        for oid, rec in self.st.orders.items():
            if oid == skip:
                continue
            for op in rec.ops:
                busy[op.machine].append((op.start, op.end))
            for move in rec.displace.values():  # where an open bid would move committed orders
                for op in move.to:
                    busy[op.machine].append((op.start, op.end))
        # gap_start needs disjoint intervals: a displaced order's old and new places and the displacing bid
        # overlap each other, and an earlier, longer interval would hide behind a later-starting short one
        return {mid: merge_windows(v) for mid, v in busy.items()}

    def clashes(self) -> set[str]:
        """Committed orders whose operations overlap another committed operation on a machine."""
        by_machine: dict[str, list[tuple[int, int, str]]] = {}
        for oid, rec in self.st.orders.items():
            if rec.status == "committed":
                for op in rec.ops:
                    if op.end > op.start:
                        by_machine.setdefault(op.machine, []).append((op.start, op.end, oid))
        out: set[str] = set()
        for spans in by_machine.values():
            spans.sort()
            reach, holder = -1, ""
            for s, e, oid in spans:
                if s < reach:
                    out |= {oid, holder}
                if e > reach:
                    reach, holder = e, oid
        return out

    def insert(self, spec: OrderSpec, ready: int, skip: str | None = None) -> list[PlannedOp]:
        """Earliest-finish insertion of the order's routing into the current plan."""
        busy = self._busy(skip)
        t = max(spec.release, ready, self.st.now)
        out: list[PlannedOp] = []
        for k, step in enumerate(spec.steps):
            best: tuple[int, int, str] | None = None
            for mid, mtype, speed in self.machine_ids():
                if mtype != step.machine_type:
                    continue
                d = step_minutes(step, spec.quantity, speed)
                win = self.windows(mid)
                ends = [e for _, e in win]
                s = gap_start(busy[mid], t, d, win, ends, True)
                s, e = place(win, ends, s, d, True)
                if best is None or (e, s) < (best[1], best[0]):
                    best = (s, e, mid)
            assert best is not None
            s, e, mid = best
            out.append(PlannedOp(operation=k, machine=mid, start=s, end=e))
            busy[mid] = merge_windows([*busy[mid], (s, e)])
            t = e
        return out

    def _reinsert(self, oid: str) -> None:
        """Place a recorded order again by gap insertion (its material date respected), around everything else."""
        rec = self.st.orders[oid]
        rec.ops = [PlacedOp.of(op) for op in self.insert(rec.spec, rec.material_ready, skip=oid)]

    # ------------------------------------------------------------- messages
    @handles(AtpPromise)
    def _on_promise(self, env: Envelope, p: AtpPromise, now: float) -> list[Envelope]:
        rec = self.st.orders.get(p.order_id)
        if rec is None or rec.status != "waiting":
            return []  # late answer for a call that is over
        if not p.available:  # no material within the horizon: this line cannot make the order
            del self.st.orders[p.order_id]
            why = f"material {p.material}: {p.supplier} cannot deliver {p.quantity:g} within its horizon"
            return [self.send(Refuse(order_id=p.order_id, line=self.id, reason=why), rec.plant, rec.conv, rec.cfp)]
        rec.dates[p.material] = p.date
        return self._bid_if_ready(p.order_id)

    @handles(Reject)
    def _on_reject(self, env: Envelope, reject: Reject, now: float) -> list[Envelope]:
        rec = self.st.orders.get(reject.order_id)
        if rec is not None and rec.status != "committed" and rec.conv == env.conversation:
            del self.st.orders[reject.order_id]
        return []

    @handles(MachineDown)
    def _on_machine_down(self, env: Envelope, ev: MachineDown, now: float) -> list[Envelope]:
        self.st.downtimes.setdefault(ev.machine, []).append((ev.start, ev.end))
        self._windows = {}
        self.st.now = max(self.st.now, ev.start)
        self.st.replan_at = None  # this replan covers a pending one
        return self.replan(self.replan_time_limit, reason=f"breakdown of {ev.machine}")

    @handles(Revoke)
    def _on_revoke(self, env: Envelope, revoke: Revoke, now: float) -> list[Envelope]:
        rec = self.st.orders.get(revoke.order_id)
        if rec is not None and revoke.conversation in (None, rec.conv):
            del self.st.orders[revoke.order_id]
        return []

    @handles(Replan)
    def _on_replan(self, env: Envelope, msg: Replan, now: float) -> list[Envelope]:
        self.st.replan_at = None
        return self.replan(msg.time_limit, reason=msg.reason)

    @handles(CallForProposals)
    def _on_cfp(self, env: Envelope, cfp: CallForProposals, now: float) -> list[Envelope]:
        spec = cfp.order
        missing = {s.machine_type for s in spec.steps} - self.types
        if missing:
            return [self.send(Refuse(order_id=spec.id, line=self.id, reason=f"no machine of type {sorted(missing)}"),
                              env.sender, env.conversation, env.id)]
        prev = self.st.orders.get(spec.id)
        if prev is not None and prev.status == "committed":
            if prev.conv != env.conversation:
                # called again in a new round: the plant does not count on this booking any more (an award it
                # stopped waiting for). Offer it as this round's bid; it stays held until award or reject.
                prev.status, prev.conv, prev.cfp, prev.plant = "tentative", env.conversation, env.id, env.sender
                prev.expires = now + self.bid_ttl_s
                prev.displace, prev.added_cost, prev.disturbance = {}, 0.0, 0
            return [self._bid_message(spec.id)]
        need = spec.material_need()
        given = {m: d for m, d in (cfp.material_dates or {}).items() if m in need}  # promised to the plant
        self.st.orders[spec.id] = LineOrder(spec=spec, status="waiting", plant=env.sender, conv=env.conversation,
                                            cfp=env.id, need=need, dates=given, expires=now + self.bid_ttl_s)
        if set(given) == set(need):
            return self._bid_if_ready(spec.id)
        return [self.send(AtpRequest(order_id=spec.id, material=m, quantity=q, needed_by=spec.release),
                          self.suppliers[m], env.conversation) for m, q in need.items() if m not in given]

    def _bid_if_ready(self, oid: str) -> list[Envelope]:
        rec = self.st.orders[oid]
        if set(rec.dates) != set(rec.need):
            return []
        rec.material_ready = max(rec.dates.values(), default=0)
        self._reinsert(oid)
        rec.status = "tentative"
        rec.displace, rec.added_cost, rec.disturbance = {}, 0.0, 0
        displacing = any(r.status == "tentative" and r.displace for o, r in self.st.orders.items() if o != oid)
        if rec.completion() > rec.spec.due and self.bid_time_limit > 0 and not displacing:
            self._cpsat_insertion(oid)
        return [self._bid_message(oid)]

    def _cpsat_insertion(self, oid: str) -> None:
        """Re-solve the line with the new order; keep the plan if it is cheaper than the gap insertion.

        Cost of a plan = the new order's priority x tardiness + 0.001 x its completion + the weighted
        tardiness it adds to committed orders. Disturbance = minutes committed operations move."""
        from paichan.solver import SolveParams, solve

        rec = self.st.orders[oid]
        spec = rec.spec
        problem, reference = self.local_problem(include=oid)
        result = solve(problem, SolveParams(time_limit=self.bid_time_limit, workers=1, reference=reference,
                                            use_heuristic=False))
        if result.schedule is None:
            return
        new = result.schedule.by_operation()
        gap_completion = rec.completion()
        gap_cost = spec.priority * max(0, gap_completion - spec.due) + 0.001 * gap_completion
        completion = max(new[f"{oid}/{k}"].end for k in range(len(spec.steps)))
        added, disturbance, displace = 0.0, 0, {}
        for other, r in self.st.orders.items():
            if r.status != "committed":
                continue
            ops = self._ops_from(new, other, len(r.ops))
            if ops == r.ops:
                continue
            before, after = r.completion(), max(op.end for op in ops)
            added += r.spec.priority * (max(0, after - r.spec.due) - max(0, before - r.spec.due))
            disturbance += sum(abs(a.start - b.start) for a, b in zip(ops, r.ops, strict=True))
            displace[other] = Displacement(from_ops=r.ops, to=ops)
        cost = spec.priority * max(0, completion - spec.due) + 0.001 * completion + added
        if cost < gap_cost - 1e-6:
            rec.ops = self._ops_from(new, oid, len(spec.steps))
            rec.displace, rec.added_cost, rec.disturbance = displace, added, disturbance

    @staticmethod
    def _ops_from(new: dict[str, ScheduledOperation], oid: str, n: int) -> list[PlacedOp]:
        return [PlacedOp(operation=k, machine=new[f"{oid}/{k}"].resource, start=new[f"{oid}/{k}"].start,
                         end=new[f"{oid}/{k}"].end) for k in range(n)]

    def _bid_message(self, oid: str) -> Envelope:
        rec = self.st.orders[oid]
        completion = rec.completion()
        tardiness = max(0, completion - rec.spec.due)
        bid = Bid(order_id=oid, line=self.id, plant=self.plant, completion=completion, tardiness=tardiness,
                  cost=rec.spec.priority * tardiness + 0.001 * completion + rec.added_cost,
                  disturbance=rec.disturbance, material_ready=rec.material_ready)
        return self.send(bid, rec.plant, rec.conv, rec.cfp)

    @handles(Award)
    def _on_award(self, env: Envelope, award: Award, now: float) -> list[Envelope]:
        orders = self.st.orders
        rec = orders.get(award.order_id)
        if rec is None or rec.status == "waiting":
            return [self.send(Refuse(order_id=award.order_id, line=self.id, reason="no open bid for this order"),
                              env.sender, env.conversation, env.id)]
        if rec.status == "committed":
            return [self._confirm(award.order_id, env)]  # duplicate award: confirm again, book nothing new
        rec.status = "committed"
        rec.plant = env.sender
        moved: dict[str, list[PlacedOp]] = {}  # displaced order -> where it was
        displace, rec.displace = rec.displace, {}
        for other, move in displace.items():  # the bid's plan moves committed orders
            cur = orders.get(other)
            if cur is not None and cur.status == "committed" and cur.ops == move.from_ops:  # not stale
                moved[other] = cur.ops
                cur.ops = move.to
        clashing = self.clashes()
        if clashing:
            # The bid's plan no longer fits what is committed (it went stale after the bid): displaced orders
            # that clash go back, and if the awarded order still clashes it is inserted again into the
            # committed plan. The confirmation tells the plant where it really is; nothing is double-booked.
            for other in [o for o in moved if o in clashing]:
                orders[other].ops = moved.pop(other)
            if self.clashes():
                self._reinsert(award.order_id)
            self.st.stale_awards += 1
        out = [self._confirm(award.order_id, env)]
        out += [self._update(other, f"made room for {award.order_id}") for other in moved]
        spec = rec.spec
        for k, st in enumerate(spec.steps):
            if st.material and st.material_per_unit > 0:
                out.append(self.send(AtpReserve(order_id=spec.id, material=st.material,
                                                quantity=st.material_per_unit * spec.quantity,
                                                needed_by=rec.ops[k].start),
                                     self.suppliers[st.material], env.conversation))
        return out

    def _confirm(self, oid: str, env: Envelope) -> Envelope:
        rec = self.st.orders[oid]
        return self.send(Confirm(order_id=oid, line=self.id, plant=self.plant, completion=rec.completion(),
                                 operations=[op.planned() for op in rec.ops]), env.sender, env.conversation, env.id)

    @handles(AtpConfirm)
    def _on_material_confirmed(self, env: Envelope, c: AtpConfirm, now: float) -> list[Envelope]:
        rec = self.st.orders.get(c.order_id)
        if rec is None or rec.status != "committed":
            return []
        if not c.available:  # the material is gone for good: give the order back to its plant
            del self.st.orders[c.order_id]
            why = f"material {c.material}: {c.supplier} can no longer deliver it within its horizon"
            return [self.send(Withdraw(order_id=c.order_id, line=self.id, reason=why), rec.plant, rec.conv)]
        rec.material_ready = max(rec.material_ready, c.date)
        if not c.late or min(op.start for op in rec.ops) >= c.date:
            return []
        self._reinsert(c.order_id)
        # a supply delay usually hits several orders: re-optimise once, shortly after the last notice
        self.st.replan_at = now + self.replan_debounce_s
        return [self._update(c.order_id, f"material {c.material} from {c.supplier} late until {c.date}")]

    def _update(self, oid: str, reason: str) -> Envelope:
        rec = self.st.orders[oid]
        return self.send(ScheduleUpdate(order_id=oid, line=self.id, plant=self.plant, completion=rec.completion(),
                                        operations=[op.planned() for op in rec.ops], reason=reason),
                         rec.plant, rec.conv)

    def tick(self, now: float) -> list[Envelope]:
        """Drop reservations of bids nobody awarded or rejected in time (a lost or late answer)."""
        stale = [oid for oid, rec in self.st.orders.items()
                 if rec.status in ("waiting", "tentative") and rec.expires < now]
        for oid in stale:
            del self.st.orders[oid]
        self.dirty |= bool(stale)
        if self.st.replan_at is not None and now >= self.st.replan_at:
            self.st.replan_at = None
            self.dirty = True
            return self.replan(self.replan_time_limit, reason="material came late")
        return []

    # ---------------------------------------------------------------- replan
    def local_problem(self, include: str | None = None) -> tuple[Problem, Schedule]:
        """Committed work (plus order ``include``, being bid for) as a problem of this line, and the
        current plan as its reference. Other open bids hold their capacity as fixed work."""
        resources = []
        for mid, _, _ in self.machine_ids():
            cal = self.calendar.model_copy(deep=True)
            cal.downtimes = [*cal.downtimes, *(Downtime(start=s, end=e, kind=DowntimeKind.BREAKDOWN)
                                               for s, e in self.st.downtimes.get(mid, []))]
            resources.append(Resource(id=mid, calendar=cal))
        orders = []
        ref = []
        now = self.st.now
        for oid, rec in sorted(self.st.orders.items()):
            held = rec.status == "tentative" and oid != include  # another open bid: fixed
            if rec.status != "committed" and oid != include and not held:
                continue
            spec = rec.spec
            ops = []
            for k, step in enumerate(spec.steps):
                planned = rec.ops[k]
                modes = [Mode(resource=mid, duration=step_minutes(step, spec.quantity, speed))
                         for mid, mtype, speed in self.machine_ids() if mtype == step.machine_type]
                mode = next(i for i, m in enumerate(modes) if m.resource == planned.machine)
                started = planned.start < now or held
                ops.append(Operation(
                    id=f"{oid}/{k}", modes=modes, can_span_breaks=True,
                    status=OperationStatus.STARTED if started else OperationStatus.PLANNED,
                    actual=Actual(resource=planned.machine, start=planned.start) if started else None,
                ))
                ref.append(ScheduledOperation(operation=f"{oid}/{k}", order=oid, resource=planned.machine,
                                              mode=mode, start=planned.start, end=planned.end))
            release = max(spec.release, rec.material_ready) if not any(o.actual for o in ops) else spec.release
            orders.append(Order(id=oid, release=release, due=spec.due, priority=0 if held else spec.priority,
                                operations=ops))
        problem = Problem(name=self.id, resources=resources, orders=orders, now=now,
                          objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 100,
                                                       ObjectiveName.STABILITY: 1, ObjectiveName.MAKESPAN: 1}))
        return problem, Schedule(problem=self.id, operations=ref)

    def replan(self, time_limit: float, reason: str) -> list[Envelope]:
        """Re-optimise committed work with CP-SAT; report every order whose plan moved."""
        from paichan.solver import SolveParams, solve

        for rec in self.st.orders.values():  # open bids stay fixed below, so their displacement plans go stale
            rec.displace = {}
        problem, reference = self.local_problem()
        if not problem.orders:
            return []
        result = solve(problem, SolveParams(time_limit=time_limit, workers=1, reference=reference))
        self.st.replans += 1
        if result.schedule is None:
            return []
        new = result.schedule.by_operation()
        out = []
        for oid, rec in self.st.orders.items():
            if rec.status != "committed":
                continue
            ops = self._ops_from(new, oid, len(rec.ops))
            if ops != rec.ops:
                rec.ops = ops
                out.append(self._update(oid, reason))
        return out
