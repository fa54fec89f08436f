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

from pydantic import BaseModel

from paichan.agents.base import Agent
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
        self.replan_at: float | None = None  # a local replan is due at this time (after late material)
        self.types = {m.type for m in spec.machines}
        # order id -> {"spec", "ops": [PlannedOp], "status": tentative|committed, "plant", "conv",
        #              "material_ready", "need": {material: qty}, "dates": {material: date}, "cfp": env id}
        self.orders: dict[str, dict[str, Any]] = {}
        self.downtimes: dict[str, list[list[int]]] = {}
        self.now = 0
        self.replans = 0
        self.stale_awards = 0  # awards whose bid plan had gone stale and was re-placed (see _award)
        self._windows: dict[str, list[tuple[int, int]]] = {}

    # ----------------------------------------------------------- persistence
    def snapshot(self) -> dict[str, Any]:
        return {"orders": self.orders, "downtimes": self.downtimes, "now": self.now, "replans": self.replans,
                "replan_at": self.replan_at, "stale_awards": self.stale_awards}

    def load(self, state: dict[str, Any]) -> None:
        self.orders = state["orders"]
        self.downtimes = state["downtimes"]
        self.now = state["now"]
        self.replans = state["replans"]
        self.replan_at = state.get("replan_at")
        self.stale_awards = state.get("stale_awards", 0)
        self._windows = {}

    # ------------------------------------------------------------- timelines
    def windows(self, mid: str) -> list[tuple[int, int]]:
        if mid not in self._windows:
            own = [tuple(w) for w in self.downtimes.get(mid, [])]
            self._windows[mid] = merge_windows(self.calendar.unavailable(self.horizon) + own)  # type: ignore[arg-type]
        return self._windows[mid]

    def machine_ids(self) -> list[tuple[str, str, float]]:
        return [(machine_id(self.plant, self.spec.id, m.id), m.type, m.speed) for m in self.spec.machines]

    def _busy(self, skip: str | None = None) -> dict[str, list[tuple[int, int]]]:
        """Per machine, the time taken by committed work, open bids and where open bids would move work."""
        busy: dict[str, list[tuple[int, int]]] = {mid: [] for mid, _, _ in self.machine_ids()}
        for oid, rec in self.orders.items():
            if oid == skip:
                continue
            for op in rec["ops"]:
                busy[op["machine"]].append((op["start"], op["end"]))
            for move in rec.get("displace", {}).values():  # where an open bid would move committed orders
                for op in move["to"]:
                    busy[op["machine"]].append((op["start"], op["end"]))
        # gap_start needs disjoint intervals: a displaced order's old and new places and the displacing bid
        # overlap each other, and an earlier, longer interval would hide behind a later-starting short one
        return {mid: merge_windows(v) for mid, v in busy.items()}

    def clashes(self) -> set[str]:
        """Committed orders whose operations overlap another committed operation on a machine."""
        by_machine: dict[str, list[tuple[int, int, str]]] = {}
        for oid, rec in self.orders.items():
            if rec["status"] == "committed":
                for op in rec["ops"]:
                    if op["end"] > op["start"]:
                        by_machine.setdefault(op["machine"], []).append((op["start"], op["end"], oid))
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
        t = max(spec.release, ready, self.now)
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

    # ------------------------------------------------------------- messages
    def handle(self, env: Envelope, payload: BaseModel, now: float) -> list[Envelope]:
        if isinstance(payload, CallForProposals):
            return self._cfp(env, payload, now)
        if isinstance(payload, AtpPromise):
            rec = self.orders.get(payload.order_id)
            if rec is None or rec["status"] != "waiting":
                return []  # late answer for a call that is over
            if not payload.available:  # no material within the horizon: this line cannot make the order
                del self.orders[payload.order_id]
                why = (f"material {payload.material}: {payload.supplier} cannot deliver {payload.quantity:g} "
                       f"within its horizon")
                return [self.send(Refuse(order_id=payload.order_id, line=self.id, reason=why), rec["plant"],
                                  rec["conv"], rec["cfp"])]
            rec["dates"][payload.material] = payload.date
            return self._bid_if_ready(payload.order_id)
        if isinstance(payload, Award):
            return self._award(env, payload)
        if isinstance(payload, Reject):
            rec = self.orders.get(payload.order_id)
            if rec is not None and rec["status"] != "committed" and rec["conv"] == env.conversation:
                del self.orders[payload.order_id]
            return []
        if isinstance(payload, AtpConfirm):
            return self._material_confirmed(payload, now)
        if isinstance(payload, MachineDown):
            self.downtimes.setdefault(payload.machine, []).append([payload.start, payload.end])
            self._windows = {}
            self.now = max(self.now, payload.start)
            self.replan_at = None  # this replan covers a pending one
            return self.replan(self.replan_time_limit, reason=f"breakdown of {payload.machine}")
        if isinstance(payload, Revoke):
            rec = self.orders.get(payload.order_id)
            if rec is not None and payload.conversation in (None, rec["conv"]):
                del self.orders[payload.order_id]
            return []
        if isinstance(payload, Replan):
            self.replan_at = None
            return self.replan(payload.time_limit, reason=payload.reason)
        raise ValueError(f"line cannot handle '{env.type}'")

    def _cfp(self, env: Envelope, cfp: CallForProposals, now: float) -> list[Envelope]:
        spec = cfp.order
        missing = {s.machine_type for s in spec.steps} - self.types
        if missing:
            return [self.send(Refuse(order_id=spec.id, line=self.id, reason=f"no machine of type {sorted(missing)}"),
                              env.sender, env.conversation, env.id)]
        prev = self.orders.get(spec.id)
        if prev is not None and prev["status"] == "committed":
            if prev["conv"] != env.conversation:
                # called again in a new round: the plant does not count on this booking any more (an award it
                # stopped waiting for). Offer it as this round's bid; it stays held until award or reject.
                prev.update(status="tentative", conv=env.conversation, cfp=env.id, plant=env.sender,
                            expires=now + self.bid_ttl_s, displace={}, added_cost=0.0, disturbance=0)
            return [self._bid_message(spec.id)]
        need: dict[str, float] = {}
        for st in spec.steps:
            if st.material and st.material_per_unit > 0:
                need[st.material] = need.get(st.material, 0) + st.material_per_unit * spec.quantity
        self.orders[spec.id] = {"spec": spec.model_dump(mode="json"), "ops": [], "status": "waiting",
                                "plant": env.sender, "conv": env.conversation, "cfp": env.id, "need": need,
                                "dates": {}, "material_ready": 0, "expires": now + self.bid_ttl_s}
        if not need:
            return self._bid_if_ready(spec.id)
        return [self.send(AtpRequest(order_id=spec.id, material=m, quantity=q, needed_by=spec.release),
                          self.suppliers[m], env.conversation) for m, q in need.items()]

    def _bid_if_ready(self, oid: str) -> list[Envelope]:
        rec = self.orders[oid]
        if set(rec["dates"]) != set(rec["need"]):
            return []
        spec = OrderSpec.model_validate(rec["spec"])
        rec["material_ready"] = max(rec["dates"].values(), default=0)
        rec["ops"] = [op.model_dump() for op in self.insert(spec, rec["material_ready"], skip=oid)]
        rec["status"] = "tentative"
        rec["displace"], rec["added_cost"], rec["disturbance"] = {}, 0.0, 0
        completion = max(op["end"] for op in rec["ops"])
        displacing = any(r["status"] == "tentative" and r.get("displace") for o, r in self.orders.items() if o != oid)
        if completion > spec.due and self.bid_time_limit > 0 and not displacing:
            self._cpsat_insertion(oid, spec)
        return [self._bid_message(oid)]

    def _cpsat_insertion(self, oid: str, spec: OrderSpec) -> None:
        """Re-solve the line with the new order; keep the plan if it is cheaper than the gap insertion.

        Cost of a plan = the new order's priority x tardiness + 0.001 x its completion + the weighted
        tardiness it adds to committed orders. Disturbance = minutes committed operations move."""
        from paichan.solver import SolveParams, solve

        rec = self.orders[oid]
        problem, reference = self.local_problem(include=oid)
        result = solve(problem, SolveParams(time_limit=self.bid_time_limit, workers=1, reference=reference,
                                            use_heuristic=False))
        if result.schedule is None:
            return
        new = result.schedule.by_operation()
        gap_completion = max(op["end"] for op in rec["ops"])
        gap_cost = spec.priority * max(0, gap_completion - spec.due) + 0.001 * gap_completion
        completion = max(new[f"{oid}/{k}"].end for k in range(len(spec.steps)))
        added, disturbance, displace = 0.0, 0, {}
        for other, r in self.orders.items():
            if r["status"] != "committed":
                continue
            ops = self._ops_from(new, other, len(r["ops"]))
            if ops == r["ops"]:
                continue
            o_spec = r["spec"]
            before = max(op["end"] for op in r["ops"])
            after = max(op["end"] for op in ops)
            added += o_spec["priority"] * (max(0, after - o_spec["due"]) - max(0, before - o_spec["due"]))
            disturbance += sum(abs(a["start"] - b["start"]) for a, b in zip(ops, r["ops"], strict=True))
            displace[other] = {"from": r["ops"], "to": ops}
        cost = spec.priority * max(0, completion - spec.due) + 0.001 * completion + added
        if cost < gap_cost - 1e-6:
            rec["ops"] = self._ops_from(new, oid, len(spec.steps))
            rec["displace"], rec["added_cost"], rec["disturbance"] = displace, added, disturbance

    @staticmethod
    def _ops_from(new: dict[str, ScheduledOperation], oid: str, n: int) -> list[dict[str, Any]]:
        return [{"operation": k, "machine": new[f"{oid}/{k}"].resource, "start": new[f"{oid}/{k}"].start,
                 "end": new[f"{oid}/{k}"].end} for k in range(n)]

    def _bid_message(self, oid: str) -> Envelope:
        rec = self.orders[oid]
        spec = OrderSpec.model_validate(rec["spec"])
        completion = max(op["end"] for op in rec["ops"])
        tardiness = max(0, completion - spec.due)
        bid = Bid(order_id=oid, line=self.id, plant=self.plant, completion=completion, tardiness=tardiness,
                  cost=spec.priority * tardiness + 0.001 * completion + rec.get("added_cost", 0.0),
                  disturbance=rec.get("disturbance", 0), material_ready=rec["material_ready"])
        return self.send(bid, rec["plant"], rec["conv"], rec["cfp"])

    def _award(self, env: Envelope, award: Award) -> list[Envelope]:
        rec = self.orders.get(award.order_id)
        if rec is None or rec["status"] == "waiting":
            return [self.send(Refuse(order_id=award.order_id, line=self.id, reason="no open bid for this order"),
                              env.sender, env.conversation, env.id)]
        if rec["status"] == "committed":
            return [self._confirm(award.order_id, env)]  # duplicate award: confirm again, book nothing new
        rec["status"] = "committed"
        rec["plant"] = env.sender
        moved: dict[str, list[dict[str, Any]]] = {}  # displaced order -> where it was
        for other, move in rec.pop("displace", {}).items():  # the bid's plan moves committed orders
            cur = self.orders.get(other)
            if cur is not None and cur["status"] == "committed" and cur["ops"] == move["from"]:  # not stale
                moved[other] = cur["ops"]
                cur["ops"] = move["to"]
        spec = OrderSpec.model_validate(rec["spec"])
        clashing = self.clashes()
        if clashing:
            # The bid's plan no longer fits what is committed (it went stale after the bid): displaced orders
            # that clash go back, and if the awarded order still clashes it is inserted again into the
            # committed plan. The confirmation tells the plant where it really is; nothing is double-booked.
            for other in [o for o in moved if o in clashing]:
                self.orders[other]["ops"] = moved.pop(other)
            if self.clashes():
                rec["ops"] = [op.model_dump() for op in self.insert(spec, rec["material_ready"], skip=award.order_id)]
            self.stale_awards += 1
        out = [self._confirm(award.order_id, env)]
        out += [self._update(other, f"made room for {award.order_id}") for other in moved]
        for k, st in enumerate(spec.steps):
            if st.material and st.material_per_unit > 0:
                out.append(self.send(AtpReserve(order_id=spec.id, material=st.material,
                                                quantity=st.material_per_unit * spec.quantity,
                                                needed_by=rec["ops"][k]["start"]),
                                     self.suppliers[st.material], env.conversation))
        return out

    def _confirm(self, oid: str, env: Envelope) -> Envelope:
        rec = self.orders[oid]
        ops = [PlannedOp.model_validate(o) for o in rec["ops"]]
        return self.send(Confirm(order_id=oid, line=self.id, plant=self.plant, completion=max(o.end for o in ops),
                                 operations=ops), env.sender, env.conversation, env.id)

    def _material_confirmed(self, c: AtpConfirm, now: float) -> list[Envelope]:
        rec = self.orders.get(c.order_id)
        if rec is None or rec["status"] != "committed":
            return []
        if not c.available:  # the material is gone for good: give the order back to its plant
            del self.orders[c.order_id]
            why = f"material {c.material}: {c.supplier} can no longer deliver it within its horizon"
            return [self.send(Withdraw(order_id=c.order_id, line=self.id, reason=why), rec["plant"], rec["conv"])]
        rec["material_ready"] = max(rec["material_ready"], c.date)
        if not c.late or min(op["start"] for op in rec["ops"]) >= c.date:
            return []
        spec = OrderSpec.model_validate(rec["spec"])
        rec["ops"] = [op.model_dump() for op in self.insert(spec, rec["material_ready"], skip=c.order_id)]
        # a supply delay usually hits several orders: re-optimise once, shortly after the last notice
        self.replan_at = now + self.replan_debounce_s
        return [self._update(c.order_id, f"material {c.material} from {c.supplier} late until {c.date}")]

    def _update(self, oid: str, reason: str) -> Envelope:
        rec = self.orders[oid]
        ops = [PlannedOp.model_validate(o) for o in rec["ops"]]
        return self.send(ScheduleUpdate(order_id=oid, line=self.id, plant=self.plant,
                                        completion=max(o.end for o in ops), operations=ops, reason=reason),
                         rec["plant"], rec["conv"])

    def tick(self, now: float) -> list[Envelope]:
        """Drop reservations of bids nobody awarded or rejected in time (a lost or late answer)."""
        stale = [oid for oid, rec in self.orders.items()
                 if rec["status"] in ("waiting", "tentative") and rec.get("expires", now) < now]
        for oid in stale:
            del self.orders[oid]
        self.dirty |= bool(stale)
        if self.replan_at is not None and now >= self.replan_at:
            self.replan_at = None
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
                                               for s, e in self.downtimes.get(mid, []))]
            resources.append(Resource(id=mid, calendar=cal))
        orders = []
        ref = []
        for oid, rec in sorted(self.orders.items()):
            held = rec["status"] == "tentative" and oid != include  # another open bid: fixed
            if rec["status"] != "committed" and oid != include and not held:
                continue
            spec = OrderSpec.model_validate(rec["spec"])
            ops = []
            for k, step in enumerate(spec.steps):
                planned = rec["ops"][k]
                modes = [Mode(resource=mid, duration=step_minutes(step, spec.quantity, speed))
                         for mid, mtype, speed in self.machine_ids() if mtype == step.machine_type]
                mode = next(i for i, m in enumerate(modes) if m.resource == planned["machine"])
                started = planned["start"] < self.now or held
                ops.append(Operation(
                    id=f"{oid}/{k}", modes=modes, can_span_breaks=True,
                    status=OperationStatus.STARTED if started else OperationStatus.PLANNED,
                    actual=Actual(resource=planned["machine"], start=planned["start"]) if started else None,
                ))
                ref.append(ScheduledOperation(operation=f"{oid}/{k}", order=oid, resource=planned["machine"],
                                              mode=mode, start=planned["start"], end=planned["end"]))
            release = max(spec.release, rec["material_ready"]) if not any(o.actual for o in ops) else spec.release
            orders.append(Order(id=oid, release=release, due=spec.due, priority=0 if held else spec.priority,
                                operations=ops))
        problem = Problem(name=self.id, resources=resources, orders=orders, now=self.now,
                          objective=Objective(weights={ObjectiveName.WEIGHTED_TARDINESS: 100,
                                                       ObjectiveName.STABILITY: 1, ObjectiveName.MAKESPAN: 1}))
        return problem, Schedule(problem=self.id, operations=ref)

    def replan(self, time_limit: float, reason: str) -> list[Envelope]:
        """Re-optimise committed work with CP-SAT; report every order whose plan moved."""
        from paichan.solver import SolveParams, solve

        for rec in self.orders.values():  # open bids stay fixed below, so their displacement plans go stale
            rec.pop("displace", None)
        problem, reference = self.local_problem()
        if not problem.orders:
            return []
        result = solve(problem, SolveParams(time_limit=time_limit, workers=1, reference=reference))
        self.replans += 1
        if result.schedule is None:
            return []
        new = result.schedule.by_operation()
        out = []
        for oid, rec in self.orders.items():
            if rec["status"] != "committed":
                continue
            ops = [{"operation": k, "machine": new[f"{oid}/{k}"].resource, "start": new[f"{oid}/{k}"].start,
                    "end": new[f"{oid}/{k}"].end} for k in range(len(rec["ops"]))]
            if ops != rec["ops"]:
                rec["ops"] = ops
                out.append(self._update(oid, reason))
        return out
