"""bench.chaos's rule for failed orders: only demand above supply may explain a failure."""

from __future__ import annotations

from bench.chaos import unexplained_failures
from paichan.agents.scenario import global_problem, small_network


def test_a_failure_is_explained_only_when_the_material_would_not_cover_the_order() -> None:
    problem = global_problem(small_network(orders=14, seed=3))
    need = {o.id: sum(u.quantity for op in o.operations for u in op.materials) for o in problem.orders}
    supply = sum(m.stock + sum(r.quantity for r in m.receipts) for m in problem.materials)
    ids = sorted(need, key=lambda o: need[o])
    confirmed, used = [], 0.0
    for oid in ids:  # confirm the smallest orders while the material lasts
        if used + need[oid] > supply:
            break
        confirmed.append(oid)
        used += need[oid]
    rest = [o for o in ids if o not in confirmed]
    assert rest, "the draw must have more demand than supply"
    status = {o: "confirmed" for o in confirmed} | {o: "failed" for o in rest}
    assert unexplained_failures(problem, status) == []  # none of the rest fits: every failure is explained
    everyone_fits = {o: "confirmed" for o in confirmed} | {confirmed[0]: "failed"}
    assert unexplained_failures(problem, everyone_fits) == [confirmed[0]]  # demand within supply: unexplained
