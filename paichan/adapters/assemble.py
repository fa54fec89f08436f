"""From adapter records to a :class:`~paichan.domain.Problem`: defaults, master data, rejections.

Readers (B2MML, CSV/JSON) only parse: they turn each message or row into a plain record
(:mod:`paichan.adapters.records`) and note parse problems on it. This module applies the rules
that are the same whatever the format, in one place:

* the planning origin and the conversion of date-times and durations to the problem's units;
* filling what a message lacks (durations, machines, whole routings) from the routing master,
  recording each filled value in the report;
* unknown machines, duplicate ids, unit conversion, lot status and expiry;
* whole-record rejection: an order with one bad operation is rejected whole, never partially.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from pydantic import ValidationError

from paichan.adapters.records import (
    ImportOptions,
    ImportResult,
    Inputs,
    LotRec,
    MaterialRec,
    MaterialReq,
    OrderRec,
    RoutingRow,
    SegmentRec,
    ShiftRec,
    TimeRef,
)
from paichan.adapters.report import ImportReport, Missing, Source
from paichan.adapters.values import convert_quantity, minutes_to_units, parse_tz
from paichan.domain import (
    Calendar,
    Downtime,
    DowntimeKind,
    Material,
    MaterialUse,
    Mode,
    Operation,
    Order,
    Predecessor,
    Problem,
    Receipt,
    Resource,
    ResourceKind,
    ScheduledOperation,
    SecondaryUse,
    SetupTime,
    TimeWindow,
    find_problems,
)
from paichan.domain.errors import validation_messages

# Lot/sublot status words (compared lower-case without spaces, '_' or '-') and what they mean for stock.
AVAILABLE = {"", "valid", "released", "available", "approved", "unrestricted", "free", "ok", "good", "accepted"}
BLOCKED = {"notvalid", "invalid", "blocked", "quarantine", "quarantined", "rejected", "hold", "onhold", "expired",
           "damaged", "qualityinspection", "inspection", "notreleased", "restricted"}
EXPECTED = {"expected", "intransit", "ordered", "planned", "inbound", "onorder"}


def status_key(status: str) -> str:
    return "".join(ch for ch in status.lower() if ch not in " _-")


class _Assembler:
    """One assembly: resources, then routing checks, then materials and stock, then orders, then validation."""

    def __init__(self, inp: Inputs, opts: ImportOptions, report: ImportReport):
        self.inp, self.opts, self.report = inp, opts, report
        self.tz = parse_tz(opts.timezone)
        self.unit = opts.time_unit
        self.origin = self._origin()
        self.resources: dict[str, Resource] = {}
        self.resource_src: dict[str, Source] = {}
        self.resource_master = bool(inp.resources)
        self.materials: dict[str, Material] = {}
        self.material_units: dict[str, str] = {}
        self.untracked: dict[str, int] = defaultdict(int)
        self.planned: list[ScheduledOperation] = []

    # ---- time -----------------------------------------------------------------------------------
    def _origin(self) -> datetime | None:
        if self.opts.origin is not None:
            o = self.opts.origin
            return o.replace(tzinfo=UTC) if o.tzinfo is None else o.astimezone(UTC)
        orders = self.inp.origin_candidates
        starts = self.inp.schedule_starts
        if starts and (not orders or min(starts) <= min(orders)):
            return min(starts)  # a schedule's own horizon start (paichan writes its origin there)
        others = [x for x in [*(r.time for r in self.inp.receipts), *(d.start for d in self.inp.downtimes),
                              *(lot.available_at for lot in self.inp.lots)] if isinstance(x, datetime)]
        cands = orders or self.inp.fallback_origins or others
        if not cands:
            return None
        local = min(cands).astimezone(self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)

    def t(self, ref: TimeRef, rounding: str) -> int:
        """Time units from the origin (``rounding`` up for earliest starts, down for latest ends)."""
        if isinstance(ref, int):
            return ref
        assert self.origin is not None
        return minutes_to_units((ref - self.origin).total_seconds() / 60, self.unit, rounding)

    def units(self, minutes: float, src: Source, record: str, what: str) -> int:
        u = minutes_to_units(minutes, self.unit, "up")
        if abs(u * {"minute": 1, "second": 1 / 60, "hour": 60}[self.unit] - minutes) > 1e-6:
            self.report.warn(src, record, f"{what} {minutes:g} min is not a whole number of {self.unit}s:"
                                          f" rounded up to {u}")
        return u

    # ---- resources --------------------------------------------------------------------------------
    def build_resources(self) -> None:
        calendars = self._calendars()
        first: dict[str, Source] = {}
        for rec in self.inp.resources:
            if rec.id in first:
                self.report.reject(rec.src, f"resource {rec.id}", f"duplicate resource id (first at {first[rec.id]})")
                continue
            first[rec.id] = rec.src
            problems = list(rec.problems)
            cal = Calendar()
            if rec.calendar:
                if rec.calendar not in calendars:
                    problems.append(f"unknown calendar '{rec.calendar}'")
                else:
                    cal = calendars[rec.calendar].model_copy(deep=True)
            if problems:
                self.report.reject(rec.src, f"resource {rec.id}", "; ".join(problems))
                continue
            try:
                kind = ResourceKind(rec.kind)
                self.resources[rec.id] = Resource(
                    id=rec.id, name=rec.name, kind=kind, capacity=rec.capacity, calendar=cal,
                    initial_family=rec.initial_family,
                    default_setup=self.units(rec.default_setup, rec.src, f"resource {rec.id}", "default setup")
                    if kind == ResourceKind.MACHINE else 0)
                self.resource_src[rec.id] = rec.src
                self.report.read["resources"] += 1
            except (ValidationError, ValueError) as e:
                self.report.reject(rec.src, f"resource {rec.id}", _pyd(e))
        self._downtimes(calendars)
        self._setups()

    def _calendars(self) -> dict[str, Calendar]:
        by_cal: dict[str, list[ShiftRec]] = defaultdict(list)
        for s in self.inp.shifts:
            by_cal[s.calendar].append(s)
        out: dict[str, Calendar] = {}
        for cid, shifts in by_cal.items():
            period = shifts[0].period
            bad = [s for s in shifts if s.period != period]
            for s in bad:
                self.report.reject(s.src, f"calendar {cid}", f"period {s.period:g} min differs from {period:g} min"
                                                             f" of the calendar's first shift ({shifts[0].src})")
            if bad:
                self.report.reject(shifts[0].src, f"calendar {cid}", "calendar rejected: its shifts disagree on the"
                                                                     " period")
                continue
            offset = 0.0
            if self.origin is not None:
                lo = self.origin.astimezone(self.tz)
                day_min = lo.hour * 60 + lo.minute + lo.second / 60
                offset = day_min if period == 1440 else lo.weekday() * 1440 + day_min if period == 10080 else 0.0
            windows: list[TimeWindow] = []
            p_u = self.units(period, shifts[0].src, f"calendar {cid}", "period")
            for s in shifts:
                length = (s.end - s.start) % period or period
                rel = (s.start - offset) % period
                wrap = rel + length - period
                parts = [(rel, rel + length)] if wrap <= 0 else [(rel, period), (0.0, wrap)]
                for a, b in parts:
                    a_u, b_u = minutes_to_units(a, self.unit, "nearest"), minutes_to_units(b, self.unit, "nearest")
                    if b_u > a_u:
                        windows.append(TimeWindow(start=a_u, end=min(b_u, p_u)))
            out[cid] = Calendar(period=p_u, shifts=windows)
            self.report.read["calendars"] += 1
        return out

    def _downtimes(self, calendars: dict[str, Calendar]) -> None:
        for d in self.inp.downtimes:
            targets = [r for r in self.resources.values() if d.resource and r.id == d.resource]
            if d.calendar:
                if d.calendar not in calendars:
                    self.report.reject(d.src, "downtime", f"unknown calendar '{d.calendar}'")
                    continue
                names = {rec.id for rec in self.inp.resources if rec.calendar == d.calendar}
                targets = [r for r in self.resources.values() if r.id in names]
            elif not targets:
                self.report.reject(d.src, "downtime", f"unknown resource '{d.resource}'")
                continue
            start, end = max(0, self.t(d.start, "down")), self.t(d.end, "up")
            if end <= 0:
                self.report.warn(d.src, "downtime", "ends before the planning origin: not needed")
                continue
            if end <= start:
                self.report.reject(d.src, "downtime", "end is not after start")
                continue
            try:
                kind = DowntimeKind(d.kind)
            except ValueError:
                self.report.reject(d.src, "downtime",
                                   f"unknown kind '{d.kind}' (holiday, maintenance, breakdown, break)")
                continue
            for r in targets:
                r.calendar.downtimes.append(Downtime(start=start, end=end, kind=kind, reason=d.reason))
            self.report.read["downtimes"] += 1

    def _setups(self) -> None:
        seen: dict[tuple[str, str, str], Source] = {}
        for s in self.inp.setups:
            key = (s.resource, s.from_family, s.to_family)
            r = self.resources.get(s.resource)
            if r is None:
                self.report.reject(s.src, "setup", f"unknown resource '{s.resource}'")
            elif r.kind != ResourceKind.MACHINE:
                self.report.reject(s.src, "setup", f"'{s.resource}' is a pool; setups apply to machines")
            elif key in seen:
                self.report.reject(s.src, "setup", f"duplicate setup {s.from_family}->{s.to_family} on {s.resource}"
                                                   f" (first at {seen[key]})")
            else:
                seen[key] = s.src
                r.setups.append(SetupTime(from_family=s.from_family, to_family=s.to_family,
                                          time=self.units(s.minutes, s.src, "setup", "setup time")))
                self.report.read["setups"] += 1

    def ensure_resource(self, rid: str, kind: ResourceKind, src: Source, capacity: int = 1) -> None:
        """Create a resource named only by orders or the routing master (no resources file)."""
        if rid in self.resources:
            r = self.resources[rid]
            if kind == ResourceKind.POOL and r.capacity < capacity and rid not in self.resource_src:
                r.capacity = capacity
            return
        self.resources[rid] = Resource(id=rid, kind=kind, capacity=capacity if kind == ResourceKind.POOL else 1)
        what = "machine" if kind == ResourceKind.MACHINE else f"pool (capacity {capacity})"
        self.report.warn(src, f"resource {rid}", f"created as a {what} with a 24/7 calendar and no setups:"
                                                 " no resources file names it")

    def check_routings(self) -> None:
        seen: dict[tuple[str, str, str], Source] = {}
        for row in self.inp.routings:
            key = (row.product, row.segment, row.machine)
            if key in seen:
                row.problems.append(f"duplicate routing row for product '{row.product or '*'}', segment"
                                    f" '{row.segment or '*'}', machine '{row.machine}' (first at {seen[key]})")
            seen.setdefault(key, row.src)
            if row.machine:
                self._routing_resource(row, row.machine, ResourceKind.MACHINE)
            for sec in row.secondary:
                self._routing_resource(row, sec.resource, ResourceKind.POOL, sec.amount)
            if row.problems:
                self.report.reject(row.src, f"routing row {row.product or '*'}/{row.segment or '*'}",
                                   "; ".join(row.problems))
            else:
                self.report.read["routing rows"] += 1

    def _routing_resource(self, row: RoutingRow, rid: str, kind: ResourceKind, amount: int = 1) -> None:
        """Check a machine or pool a routing row names; without a resources file, create it."""
        what, other = ("machine", "pool") if kind == ResourceKind.MACHINE else ("pool", "machine")
        r = self.resources.get(rid)
        if r is None and self.resource_master:
            row.problems.append(f"unknown {what} '{rid}' (not in the resources file)")
        elif r is not None and r.kind != kind:
            row.problems.append(f"'{rid}' is a {other}, not a {what}")
        elif r is None:
            self.ensure_resource(rid, kind, row.src, amount)

    def lookup(self, product: str, key: str) -> list[RoutingRow]:
        """Routing rows for (product, segment), most specific match first: exact, any product, any segment."""
        levels = [(product, key), ("", key), (product, ""), ("", "")] if key else [(product, ""), ("", "")]
        for p, k in levels:
            rows = [r for r in self.inp.routings if r.product == p and r.segment == k]
            if rows:
                return rows
        return []

    # ---- materials ---------------------------------------------------------------------------------
    def build_materials(self) -> None:
        defs: dict[str, MaterialRec] = {}
        for m in self.inp.materials:
            if m.id in defs and defs[m.id].src.file == m.src.file:
                self.report.reject(m.src, f"material {m.id}", f"duplicate material id (first at {defs[m.id].src})")
                continue
            defs[m.id] = m
        tracked = {lot.material for lot in self.inp.lots if lot.material} | {r.material for r in self.inp.receipts}
        ids = list(dict.fromkeys([*defs, *sorted(tracked)]))
        for mid in ids:
            d = defs.get(mid)
            units = [x.unit for x in self.inp.lots if x.material == mid and x.unit]
            units += [x.unit for x in self.inp.receipts if x.material == mid and x.unit]
            unit = d.unit if d and d.unit else next(iter(units), "")
            self.material_units[mid] = unit
            if mid in tracked or self.opts.untracked_materials == "zero":
                self.materials[mid] = Material(id=mid, name=d.name if d else "", unit=unit)
        self._apply_consumption()
        self._stock()
        for r in self.inp.receipts:
            self._receipt(r.material, r.quantity, r.unit, r.time, r.src, r.source, "receipt")

    def _apply_consumption(self) -> None:
        for c in self.inp.consumed:
            match = [lot for lot in self.inp.lots
                     if lot.lot == c.lot and lot.sublot == c.sublot and lot.quantity is not None]
            if not match:
                c.applied = "not deducted from stock: its lot/sublot is not in the stock read"
            elif c.reported is None or match[-1].snapshot is None or c.reported <= match[-1].snapshot:
                c.applied = (f"not deducted from stock: the stock snapshot ({match[-1].src.file}) is not older than"
                             " the consumption report")
            else:
                lot = match[-1]
                assert lot.quantity is not None
                try:
                    q = convert_quantity(c.quantity, c.unit, lot.unit)
                except ValueError as e:
                    c.applied = f"not deducted from stock: {e}"
                else:
                    lot.quantity = max(0.0, lot.quantity - q)
                    c.applied = f"deducted {q:g} {lot.unit} from {lot.lot}/{lot.sublot} ({lot.src.file})"
            self.report.warn(c.src, f"consumed {c.material}",
                             f"{c.quantity:g} {c.unit} from lot {c.lot or '-'} sublot {c.sublot or '-'}"
                             f" (response {c.response}, segment {c.segment}): {c.applied}")
            self.report.read["material actuals"] += 1

    def _stock(self) -> None:
        ordered = sorted(enumerate(self.inp.lots),
                         key=lambda x: (x[1].snapshot or datetime.min.replace(tzinfo=UTC), x[0]))
        recs: dict[tuple[str, str], LotRec] = {}
        for _, lot in ordered:
            key = (lot.lot, lot.sublot)
            old = recs.get(key)
            name = f"stock {lot.lot}" + (f"/{lot.sublot}" if lot.sublot else "")
            if old is not None:
                if old.src.file == lot.src.file:
                    self.report.reject(lot.src, name, f"duplicate lot/sublot id in the same file (first at {old.src})")
                    continue
                self.report.warn(lot.src, name, f"updates the record read at {old.src} (the newer message wins;"
                                                " fields it lacks are kept)")
                for f in ("quantity", "status", "expiry", "available_at", "location"):
                    if getattr(lot, f) in (None, "") and getattr(old, f) not in (None, ""):
                        setattr(lot, f, getattr(old, f))
            recs[key] = lot
        with_sublots = {lot for (lot, sub), r in recs.items() if sub and r.quantity is not None}
        policy = {status_key(k): v for k, v in self.opts.lot_status.items()}
        for (lot_id, sub), rec in recs.items():
            name = f"stock {lot_id}" + (f"/{sub}" if sub else "")
            header = recs.get((lot_id, ""))
            if rec.quantity is None:
                continue
            if not sub and lot_id in with_sublots:
                self.report.warn(rec.src, name, "lot quantity not used: its sublots carry the quantities")
                continue
            if not rec.material:
                self.report.reject(rec.src, name, "no material: the lot names no MaterialDefinitionID")
                continue
            status = rec.status if rec.status is not None else (header.status if header and header.status else "")
            expiry = rec.expiry or (header.expiry if header else None)
            sk = status_key(status)
            verdict = policy.get(sk) or ("available" if sk in AVAILABLE else "blocked" if sk in BLOCKED
                                         else "expected" if sk in EXPECTED else "")
            if not verdict:
                self.report.reject(rec.src, name, f"unknown status '{status}': say what it means with"
                                                  f" --lot-status '{status}=available|blocked|expected'")
                continue
            if expiry is not None and self.origin is not None and expiry <= self.origin:
                self.report.warn(rec.src, name,
                                 f"{rec.quantity:g} {rec.unit} not counted: expired {expiry.isoformat()}")
                continue
            if verdict == "blocked":
                self.report.warn(rec.src, name, f"{rec.quantity:g} {rec.unit} of {rec.material} not counted:"
                                                f" status '{status}' is blocked")
                continue
            if verdict == "expected":
                when = rec.available_at
                if when is None:
                    self.report.reject(rec.src, name,
                                       f"status '{status}' means expected, but no available date is given")
                    continue
                self._receipt(rec.material, rec.quantity, rec.unit, when, rec.src, f"lot {lot_id}", name)
                continue
            m = self.materials.get(rec.material)
            if m is None:
                continue
            try:
                m.stock += convert_quantity(rec.quantity, rec.unit, m.unit)
                self.report.read["stock records"] += 1
            except ValueError as e:
                self.report.reject(rec.src, name, str(e))

    def _receipt(self, material: str, qty: float, unit: str, when: TimeRef, src: Source, source: str,
                 name: str) -> None:
        m = self.materials.get(material)
        if m is None:
            self.report.reject(src, name, f"unknown material '{material}'")
            return
        try:
            q = convert_quantity(qty, unit, m.unit)
        except ValueError as e:
            self.report.reject(src, name, str(e))
            return
        if q <= 0:
            self.report.warn(src, name, "zero quantity: nothing to receive")
            return
        m.receipts.append(Receipt(time=max(0, self.t(when, "up")), quantity=q, source=source))
        self.report.read["receipts"] += 1

    # ---- orders ---------------------------------------------------------------------------------------
    def build_orders(self) -> list[Order]:
        orders: list[Order] = []
        first: dict[str, Source] = {}
        for rec in self.inp.orders:
            if rec.id and rec.id in first:
                self.report.reject(rec.src, f"order {rec.id}", f"duplicate order id (first at {first[rec.id]})")
                continue
            if rec.id:
                first[rec.id] = rec.src
            order = self._order(rec)
            if order is not None:
                orders.append(order)
        return orders

    def _order(self, rec: OrderRec) -> Order | None:
        problems = list(rec.problems)
        name = f"order {rec.id or '(no ID)'}"
        if not rec.id:
            problems.append("no ID")
        segments = rec.segments
        if segments is None:
            segments = self._explode(rec, problems)
        elif not segments and not problems:
            problems.append("no SegmentRequirement: nothing to schedule")
        ops: list[Operation] = []
        planned: list[ScheduledOperation] = []
        local_ids: dict[str, Source] = {}
        for k, seg in enumerate(segments):
            if seg.local_id in local_ids:
                problems.append(f"duplicate operation id '{seg.local_id}' in the order ({seg.src.where} and"
                                f" {local_ids[seg.local_id].where})")
                continue
            local_ids[seg.local_id] = seg.src
            op = self._operation(rec, seg, ops[-1].id if k and ops else None, problems)
            if op is not None:
                ops.append(op)
                if len(op.modes) == 1 and isinstance(seg.earliest, datetime) and isinstance(seg.latest, datetime):
                    planned.append(ScheduledOperation(operation=op.id, order=rec.id, resource=op.modes[0].resource,
                                                      mode=0, start=self.t(seg.earliest, "up"),
                                                      end=self.t(seg.latest, "down")))
        release = max(0, self.t(rec.release, "up")) if rec.release is not None else 0
        due = self.t(rec.due, "down") if rec.due is not None else None
        deadline = self.t(rec.deadline, "down") if rec.deadline is not None else None
        if rec.latest_end is not None:
            le = self.t(rec.latest_end, "down")
            if self.opts.latest_end == "deadline":
                deadline = le if deadline is None else min(deadline, le)
            else:
                due = le if due is None else min(due, le)
        if deadline is not None and deadline < 0:
            problems.append(f"deadline is before the planning origin {self.origin.isoformat() if self.origin else 0}")
        elif deadline is not None and deadline < release:
            problems.append(f"deadline ({deadline}) is before release ({release})")
        if rec.quantity is not None and rec.quantity <= 0:
            problems.append(f"quantity {rec.quantity:g} is not positive")
        if problems:
            self.report.reject(rec.src, name, "; ".join(dict.fromkeys(problems)))
            return None
        try:
            order = Order(id=rec.id, product=rec.product, quantity=rec.quantity or 1, release=release, due=due,
                          deadline=deadline, priority=rec.priority if rec.priority is not None else 1, operations=ops)
        except ValidationError as e:
            self.report.reject(rec.src, name, _pyd(e))
            return None
        self.planned.extend(planned)
        return order

    def _explode(self, rec: OrderRec, problems: list[str]) -> list[SegmentRec]:
        rows = [r for r in self.inp.routings if r.product == rec.product and r.segment and rec.product]
        if not rows:
            if not rec.product:
                problems.append("no operations and no product whose routing could supply them")
            else:
                problems.append("no operations: " + ("no SegmentRequirement and " if rec.message else "")
                                + f"no routing for product '{rec.product}' in the routing master")
            return []
        groups: dict[str, list[RoutingRow]] = {}
        for r in sorted(rows, key=lambda r: (r.seq if r.seq is not None else float("inf"))):
            groups.setdefault(r.segment, []).append(r)
        segs: list[SegmentRec] = []
        qty = rec.quantity or 1.0
        for seg_id, grp in groups.items():
            mats = [MaterialReq(m, q * qty, u, grp[0].src) for m, q, u in grp[0].consumes]
            segs.append(SegmentRec(local_id=seg_id, name=grp[0].name or seg_id, key=seg_id, src=rec.src,
                                   materials=mats, from_master=True))
        if rec.message:
            self.report.missing.append(Missing(rec.src.file, rec.src.where, f"order {rec.id}",
                                               "SegmentRequirement (operations)", ", ".join(groups),
                                               f"the routing of product {rec.product}: "
                                               + "; ".join(str(r.src) for r in rows)))
        return segs

    def _operation(self, order: OrderRec, seg: SegmentRec, prev: str | None, problems: list[str]) -> Operation | None:
        oid = seg.local_id if seg.local_id.startswith(f"{order.id}/") else f"{order.id}/{seg.local_id}"
        rec_name = f"order {order.id or '(no ID)'}, operation {seg.local_id}"

        def missing(field: str, value: str = "", source: str = "") -> None:
            if not seg.from_master:
                self.report.missing.append(Missing(seg.src.file, seg.src.where, rec_name, field, value, source))
        n_before = len(problems)
        rows = self.lookup(order.product, seg.key)
        broken = [r for r in rows if r.problems]
        if broken:
            problems.append(f"operation {seg.local_id}: its routing master row {broken[0].src} was rejected")
            return None
        machines: list[str] = []
        pools: list[SecondaryUse] = []
        for e in [*seg.equipment, *seg.personnel]:
            r = self.resources.get(e.resource)
            is_person = e in seg.personnel
            if r is not None and r.kind == ResourceKind.POOL:
                pools.append(SecondaryUse(resource=e.resource, amount=max(1, e.amount)))
            elif r is not None and not is_person:
                machines.append(e.resource)
            elif is_person:
                self.report.warn(seg.src, rec_name, f"personnel '{e.resource}' is not a known pool: not scheduled")
            elif self.resource_master or any(r.machine for r in self.inp.routings):
                problems.append(f"operation {seg.local_id}: unknown machine '{e.resource}' (not in the resources"
                                " file or the routing master)")
            else:
                self.ensure_resource(e.resource, ResourceKind.MACHINE, seg.src)
                machines.append(e.resource)
        machines = list(dict.fromkeys(machines))
        modes: list[tuple[str, float, RoutingRow | None]] = []
        if machines:
            for m in machines:
                # master data for this machine (or for the segment on any machine) still gives pools, family, lags
                row = next((r for r in rows if r.machine == m), None) or next((r for r in rows if not r.machine), None)
                if seg.duration is not None:
                    modes.append((m, seg.duration, row))
                    continue
                if row is None or row.duration is None:
                    missing(f"Duration on {m}")
                    problems.append(f"operation {seg.local_id}: no Duration, and no routing master row for product"
                                    f" '{order.product or '*'}', segment '{seg.key or '*'}' gives one for {m}")
                    continue
                missing(f"Duration on {m}", f"{row.duration:g} min", row.describe())
                modes.append((m, row.duration, row))
        else:
            mrows = [r for r in rows if r.machine]
            if not mrows:
                missing("machine (EquipmentID)")
                if seg.duration is None:
                    missing("Duration")
                problems.append(f"operation {seg.local_id}: no machine (EquipmentRequirement/EquipmentID) and no"
                                f" routing master row for product '{order.product or '*'}', segment"
                                f" '{seg.key or '*'}'")
            else:
                missing("machine (EquipmentID)", " | ".join(r.machine for r in mrows),
                        "; ".join(r.describe() for r in mrows))
                for row in mrows:
                    d = seg.duration if seg.duration is not None else row.duration
                    if d is None:
                        problems.append(f"operation {seg.local_id}: no Duration in the message nor in {row.describe()}")
                        continue
                    if seg.duration is None:
                        missing(f"Duration on {row.machine}", f"{d:g} min", row.describe())
                    modes.append((row.machine, d, row))
        mats: list[MaterialUse] = []
        for mr in seg.materials:
            mat = self.materials.get(mr.material)
            if mat is None and self.opts.untracked_materials == "zero":
                mat = self.materials[mr.material] = Material(id=mr.material, unit=mr.unit)
            if mat is None:
                self.untracked[mr.material] += 1
                continue
            try:
                q = convert_quantity(mr.quantity, mr.unit, mat.unit)
            except ValueError as e:
                problems.append(f"operation {seg.local_id}: material {mr.material}: {e}")
                continue
            if q > 0:
                mats.append(MaterialUse(material=mr.material, quantity=q))
        if len(problems) > n_before:
            return None
        first_row = next((r for _, _, r in modes if r is not None), None) or (rows[0] if rows else None)
        try:
            mode_objs = [Mode(resource=m, duration=self.units(d, seg.src, rec_name, "duration"),
                              secondary=pools + [s for s in (
                                  [SecondaryUse(resource=x.resource, amount=x.amount) for x in row.secondary]
                                  if row else []) if s.resource not in {p.resource for p in pools}])
                         for m, d, row in modes]
            preds = None
            if prev is not None and first_row is not None and (first_row.min_lag or first_row.max_lag is not None):
                preds = [Predecessor(
                    operation=prev,
                    min_lag=self.units(first_row.min_lag or 0, seg.src, rec_name, "min lag"),
                    max_lag=None if first_row.max_lag is None else self.units(first_row.max_lag, seg.src, rec_name,
                                                                              "max lag"))]
            return Operation(id=oid, name=seg.name, modes=mode_objs,
                             family=seg.family or (first_row.family if first_row else None),
                             predecessors=preds, materials=mats,
                             can_span_breaks=bool(first_row.can_span_breaks) if first_row else False)
        except (ValidationError, ValueError) as e:
            problems.append(f"operation {seg.local_id}: {_pyd(e)}")
            return None

    # ---- whole problem ----------------------------------------------------------------------------------
    def build(self) -> ImportResult:
        self.build_resources()
        self.check_routings()
        self.build_materials()
        orders = self.build_orders()
        for mid, n in self.untracked.items():
            self.report.warn(Source("(all files)"), f"material {mid}",
                             f"{n} consumption(s) not constrained: no stock or receipt data for this material"
                             " (use --untracked-materials zero to treat it as out of stock)")
        src_of = {rec.id: rec.src for rec in self.inp.orders}
        while True:
            problem = Problem(name=self.opts.name, origin=self.origin, time_unit=self.unit,
                              resources=list(self.resources.values()), orders=orders,
                              materials=list(self.materials.values()))
            bad: dict[str, list[str]] = defaultdict(list)
            for f in find_problems(problem):
                if f.path.startswith("orders["):
                    oid = f.path.split("(id=", 1)[1].split(")", 1)[0]
                    bad[oid].append(f"{f.path.split(')', 1)[1].lstrip('.') or 'order'}: {f.message}")
                else:
                    self.report.warn(Source("(problem)"), f.path, f"{f.message} - the problem cannot be solved"
                                                                  " until this is fixed")
            if not bad:
                break
            self.report.warnings = [w for w in self.report.warnings if w.file != "(problem)"]
            for oid, msgs in bad.items():
                self.report.reject(src_of.get(oid, Source("(problem)")), f"order {oid}", "; ".join(msgs))
            orders = [o for o in orders if o.id not in bad]
            self.planned = [p for p in self.planned if p.order not in bad]
        self.report.read["orders"] = len(problem.orders)
        self.report.read["operations"] = sum(len(o.operations) for o in problem.orders)
        self.report.read["materials"] = len(problem.materials)
        self.report.read["resources"] = len(problem.resources)
        return ImportResult(problem=problem, report=self.report, planned=self.planned, consumed=self.inp.consumed)


def assemble(inp: Inputs, opts: ImportOptions, report: ImportReport) -> ImportResult:
    """Build the problem from everything read; rejected records go to ``report``."""
    return _Assembler(inp, opts, report).build()


def _pyd(e: Exception) -> str:
    """A pydantic/ValueError message on one line."""
    if isinstance(e, ValidationError):
        return "; ".join(validation_messages(e, top="value"))
    return str(e)
