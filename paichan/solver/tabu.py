"""Tabu search on the disjunctive graph for (flexible) job-shop makespan.

CP-SAT alone stalls on medium and large job shops; a local search on the
disjunctive graph is the classic remedy. This one uses
* N5 moves (swap the first or last two operations of a critical block) scored
  by the Balas-Vazacopoulos head/tail estimate, O(1) per move;
* for flexible shops, reassignment of a critical operation to another eligible
  machine (inserted in start-time order), scored exactly; moves that would
  close a cycle are rejected by the recomputation;
* tabu tenure on reversed arcs and on left machines, aspiration by the best
  makespan, and a restart from the best solution with a random kick when the
  search stalls.

It applies only to the "core" problem: linear routings, makespan only, no
calendars, setups, pools, materials, lags, deadlines or fixed work (see
:func:`applicable`). The kernels are numba-compiled with ``nogil`` so a CP-SAT
worker can run beside them on the other core; Python drives them in short
chunks to watch the clock.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
from numba import njit

from paichan.domain import ObjectiveName
from paichan.solver.compiled import CProblem
from paichan.solver.heuristic import Timetable

NEG = -(1 << 40)


def applicable(cp: CProblem) -> bool:
    """True if the problem is a plain (flexible) job shop with a makespan objective."""
    if cp.problem.objective.terms() != [ObjectiveName.MAKESPAN]:
        return False
    if cp.has_calendars or cp.has_setups or cp.materials or cp.pools or any(cp.order_one_group):
        return False
    for c in cp.ops:
        if c.fixed or c.deadline is not None or c.materials:
            return False
        if len(c.preds) > 1 or any(lo != 0 or hi is not None for _, lo, hi in c.preds):
            return False
        if c.preds and cp.ops[c.preds[0][0]].order != c.order:
            return False
        if len(c.succs) > 1:
            return False
    return True


@njit(cache=True, nogil=True)
def _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r, q, order, indeg):
    """Heads r, tails q (excluding own duration), topological order; -1 on a cycle."""
    head = 0
    tail = 0
    for i in range(n):
        indeg[i] = (1 if job_prev[i] >= 0 else 0) + (1 if mach_prev[i] >= 0 else 0)
        if indeg[i] == 0:
            order[tail] = i
            tail += 1
    while head < tail:
        i = order[head]
        head += 1
        j = job_next[i]
        if j >= 0:
            indeg[j] -= 1
            if indeg[j] == 0:
                order[tail] = j
                tail += 1
        j = mach_next[i]
        if j >= 0:
            indeg[j] -= 1
            if indeg[j] == 0:
                order[tail] = j
                tail += 1
    if tail < n:
        return -1
    cmax = 0
    for k in range(n):
        i = order[k]
        h = release[i]
        p = job_prev[i]
        if p >= 0 and r[p] + dur[p] > h:
            h = r[p] + dur[p]
        p = mach_prev[i]
        if p >= 0 and r[p] + dur[p] > h:
            h = r[p] + dur[p]
        r[i] = h
        if h + dur[i] > cmax:
            cmax = h + dur[i]
    for k in range(n - 1, -1, -1):
        i = order[k]
        t = 0
        s = job_next[i]
        if s >= 0 and q[s] + dur[s] > t:
            t = q[s] + dur[s]
        s = mach_next[i]
        if s >= 0 and q[s] + dur[s] > t:
            t = q[s] + dur[s]
        q[i] = t
    return cmax


@njit(cache=True, nogil=True)
def _critical_path(n, job_prev, mach_prev, dur, release, r, q, cmax, path):
    """Fill ``path`` (reversed) with one critical path; returns its length."""
    end = -1
    for i in range(n):
        if r[i] + dur[i] == cmax and q[i] == 0:
            if end < 0 or np.random.random() < 0.3:
                end = i
    length = 0
    i = end
    while i >= 0:
        path[length] = i
        length += 1
        mp = mach_prev[i]
        jp = job_prev[i]
        via_m = mp >= 0 and r[mp] + dur[mp] == r[i]
        via_j = jp >= 0 and r[jp] + dur[jp] == r[i]
        if via_m and via_j:
            i = mp if np.random.random() < 0.5 else jp
        elif via_m:
            i = mp
        elif via_j:
            i = jp
        else:
            i = -1
    return length


@njit(cache=True, nogil=True)
def _swap(u, v, mach_prev, mach_next, mach_first, machine):
    """Swap adjacent machine neighbours u -> v into v -> u."""
    a = mach_prev[u]
    b = mach_next[v]
    if a >= 0:
        mach_next[a] = v
    else:
        mach_first[machine[u]] = v
    mach_prev[v] = a
    mach_next[v] = u
    mach_prev[u] = v
    mach_next[u] = b
    if b >= 0:
        mach_prev[b] = u


@njit(cache=True, nogil=True)
def _unlink(u, mach_prev, mach_next, mach_first, machine):
    a = mach_prev[u]
    b = mach_next[u]
    if a >= 0:
        mach_next[a] = b
    else:
        mach_first[machine[u]] = b
    if b >= 0:
        mach_prev[b] = a
    mach_prev[u] = -1
    mach_next[u] = -1


@njit(cache=True, nogil=True)
def _link_after(u, a, k, mach_prev, mach_next, mach_first, machine):
    """Insert u on machine k after a (a = -1: at the front)."""
    machine[u] = k
    if a >= 0:
        b = mach_next[a]
        mach_next[a] = u
    else:
        b = mach_first[k]
        mach_first[k] = u
    mach_prev[u] = a
    mach_next[u] = b
    if b >= 0:
        mach_prev[b] = u


@njit(cache=True, nogil=True)
def _insert_point(u, k, r, mach_next, mach_first):
    """Last operation on machine k whose head is <= u's head (-1: front)."""
    a = -1
    x = mach_first[k]
    while x >= 0 and r[x] <= r[u]:
        if x != u:
            a = x
        x = mach_next[x]
    return a


@njit(cache=True, nogil=True)
def _tabu_chunk(
    n, job_prev, job_next, release, mode_ptr, mode_machine, mode_dur,  # problem
    mode, machine, dur, mach_prev, mach_next, mach_first,  # current solution (mutated)
    best_mode, best_prev, best_next, best_first, best_val,  # best solution (mutated); best_val[0] = makespan
    tabu_arc, tabu_mach, state, iters, seed,  # state: iteration, stall, tenure, seeded, stall limit, restarts
    r, q, order, indeg, path, r2, q2, order2,
):
    """Run ``iters`` tabu iterations from the current solution; returns the current makespan."""
    if state[3] == 0:
        np.random.seed(seed)
        state[3] = 1
    cmax = _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r, q, order, indeg)
    for _ in range(iters):
        it = state[0]
        state[0] += 1
        length = _critical_path(n, job_prev, mach_prev, dur, release, r, q, cmax, path)
        # path is reversed: path[length-1] is the first operation.
        best_est = 1 << 60
        bu = -1
        bv = -1
        bkind = 0  # 1 swap, 2 reassign
        bk = -1
        btabu_u = -1
        btabu_v = -1
        n_tabu = 0
        # --- N5 swaps over critical blocks
        k = length - 1
        block_index = 0
        while k >= 0:
            s = k
            while s - 1 >= 0 and machine[path[s - 1]] == machine[path[k]] and mach_prev[path[s - 1]] == path[s]:
                s -= 1
            # block is path[k] (first) .. path[s] (last)
            blen = k - s + 1
            if blen >= 2:
                is_first = block_index == 0
                is_last = s == 0
                do_first = (not is_first) or is_last  # a lone block gets both ends
                do_last = (not is_last) or is_first
                if blen == 2 and do_first and do_last:
                    do_last = False  # the same pair
                for which in range(2):
                    if which == 0:
                        if not do_first:
                            continue
                        u = path[k]
                        v = path[k - 1]
                    else:
                        if not do_last:
                            continue
                        u = path[s + 1]
                        v = path[s]
                    if job_next[u] == v:
                        continue  # same job back to back: swapping would close a cycle
                    a = mach_prev[u]
                    b = mach_next[v]
                    jpu = job_prev[u]
                    jpv = job_prev[v]
                    jnu = job_next[u]
                    jnv = job_next[v]
                    hv = release[v]
                    if jpv >= 0 and r[jpv] + dur[jpv] > hv:
                        hv = r[jpv] + dur[jpv]
                    if a >= 0 and r[a] + dur[a] > hv:
                        hv = r[a] + dur[a]
                    hu = release[u]
                    if jpu >= 0 and r[jpu] + dur[jpu] > hu:
                        hu = r[jpu] + dur[jpu]
                    if hv + dur[v] > hu:
                        hu = hv + dur[v]
                    tu = 0
                    if jnu >= 0 and q[jnu] + dur[jnu] > tu:
                        tu = q[jnu] + dur[jnu]
                    if b >= 0 and q[b] + dur[b] > tu:
                        tu = q[b] + dur[b]
                    tv = 0
                    if jnv >= 0 and q[jnv] + dur[jnv] > tv:
                        tv = q[jnv] + dur[jnv]
                    if tu + dur[u] > tv:
                        tv = tu + dur[u]
                    est = hv + dur[v] + tv
                    if hu + dur[u] + tu > est:
                        est = hu + dur[u] + tu
                    is_tabu = tabu_arc[(v * 40503 + u) % tabu_arc.shape[0]] > it
                    if is_tabu:
                        n_tabu += 1
                        if btabu_u < 0 or np.random.random() < 0.5:
                            btabu_u = u
                            btabu_v = v
                    if (not is_tabu or est < best_val[0]) and (
                        est < best_est or (est == best_est and np.random.random() < 0.5)
                    ):
                        best_est = est
                        bu = u
                        bv = v
                        bkind = 1
            block_index += 1
            k = s - 1
        # --- reassignment of critical operations (flexible shops)
        n_try = length if length <= 24 else 24  # long paths: sample, each try costs O(n)
        for t_i in range(n_try):
            p = t_i if length <= 24 else np.random.randint(0, length)
            u = path[p]
            nm = mode_ptr[u + 1] - mode_ptr[u]
            if nm < 2:
                continue
            old_mode = mode[u]
            old_m = machine[u]
            old_prev = mach_prev[u]
            for gm in range(mode_ptr[u], mode_ptr[u + 1]):
                km = mode_machine[gm]
                if km == old_m:
                    continue
                is_tabu = tabu_mach[u, km] > it
                _unlink(u, mach_prev, mach_next, mach_first, machine)
                a = _insert_point(u, km, r, mach_next, mach_first)
                _link_after(u, a, km, mach_prev, mach_next, mach_first, machine)
                old_d = dur[u]
                dur[u] = mode_dur[gm]
                val = _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r2, q2, order2, indeg)
                dur[u] = old_d
                _unlink(u, mach_prev, mach_next, mach_first, machine)
                _link_after(u, old_prev, old_m, mach_prev, mach_next, mach_first, machine)
                mode[u] = old_mode
                if val < 0:
                    continue
                if (not is_tabu or val < best_val[0]) and (
                    val < best_est or (val == best_est and np.random.random() < 0.5)
                ):
                    best_est = val
                    bu = u
                    bk = gm
                    bkind = 2
        # --- apply
        if bkind == 0:
            if btabu_u < 0:
                state[1] += 1
                bkind = 3  # nothing to do: kick below
            else:
                bu = btabu_u
                bv = btabu_v
                bkind = 1
        tenure = state[2] + np.random.randint(0, state[2] + 1)
        if bkind == 1:
            _swap(bu, bv, mach_prev, mach_next, mach_first, machine)
            tabu_arc[(bu * 40503 + bv) % tabu_arc.shape[0]] = it + tenure  # forbid bu before bv again
        elif bkind == 2:
            old_m = machine[bu]
            _unlink(bu, mach_prev, mach_next, mach_first, machine)
            a = _insert_point(bu, mode_machine[bk], r, mach_next, mach_first)
            _link_after(bu, a, mode_machine[bk], mach_prev, mach_next, mach_first, machine)
            mode[bu] = bk - mode_ptr[bu]
            dur[bu] = mode_dur[bk]
            tabu_mach[bu, old_m] = it + tenure
        cmax = _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r, q, order, indeg)
        if cmax < 0 and bkind == 1:  # guard: undo a move that closed a cycle
            _swap(bv, bu, mach_prev, mach_next, mach_first, machine)
            cmax = _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r, q, order, indeg)
        if cmax < best_val[0]:
            best_val[0] = cmax
            best_mode[:] = mode
            best_prev[:] = mach_prev
            best_next[:] = mach_next
            best_first[:] = mach_first
            state[1] = 0
            state[5] = 0
        else:
            state[1] += 1
        if state[1] > state[4] or bkind == 3:
            # restart from the best with a random kick of a few swaps
            mode[:] = best_mode
            mach_prev[:] = best_prev
            mach_next[:] = best_next
            mach_first[:] = best_first
            for i in range(n):
                md = mode_ptr[i] + mode[i]
                machine[i] = mode_machine[md]
                dur[i] = mode_dur[md]
            cmax = _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r, q, order, indeg)
            state[5] += 1  # restarts since the last improvement: kick harder each time
            for _kick in range(2 + np.random.randint(0, 3) + state[5] % 12):
                length = _critical_path(n, job_prev, mach_prev, dur, release, r, q, cmax, path)
                p = np.random.randint(0, length)
                u = path[p]
                v = mach_next[u]
                if v >= 0:
                    _swap(u, v, mach_prev, mach_next, mach_first, machine)
                    if _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r, q, order, indeg) < 0:
                        _swap(v, u, mach_prev, mach_next, mach_first, machine)
                cmax = _evaluate(n, job_prev, job_next, mach_prev, mach_next, dur, release, r, q, order, indeg)
            state[1] = 0
    return cmax


class TabuSearch:
    """Holds the arrays of one tabu run; ``run`` advances it until a deadline."""

    def __init__(self, cp: CProblem, start: Timetable, seed: int = 0) -> None:
        n = len(cp.ops)
        self.cp = cp
        self.n = n
        i64 = np.int64
        self.job_prev = np.full(n, -1, i64)
        self.job_next = np.full(n, -1, i64)
        self.release = np.array([c.release for c in cp.ops], i64)
        ptr = [0]
        mm: list[int] = []
        md: list[int] = []
        for c in cp.ops:
            if c.preds:
                p = c.preds[0][0]
                self.job_prev[c.idx] = p
                self.job_next[p] = c.idx
            for m in c.modes:
                mm.append(m.machine)
                md.append(m.duration)
            ptr.append(len(mm))
        self.mode_ptr = np.array(ptr, i64)
        self.mode_machine = np.array(mm, i64)
        self.mode_dur = np.array(md, i64)
        n_m = len(cp.machines)
        self.mach_first = np.full(n_m, -1, i64)
        self.mach_prev = np.full(n, -1, i64)
        self.mach_next = np.full(n, -1, i64)
        self.mode = np.zeros(n, i64)
        self._set_current(start)
        self.best_mode = self.mode.copy()
        self.best_prev = self.mach_prev.copy()
        self.best_next = self.mach_next.copy()
        self.best_first = self.mach_first.copy()
        self.best_val = np.array([1 << 60], i64)
        self.tabu_arc = np.zeros(min(n * n, 1 << 22), np.int64)  # hashed (u, v) -> tabu until
        self.tabu_mach = np.zeros((n, n_m), np.int64)
        tenure = 10 + n // max(1, n_m)
        self.state = np.array([0, 0, tenure, 0, max(2000, 20 * n), 0], i64)
        self.seed = seed
        self.r = np.zeros(n, i64)
        self.q = np.zeros(n, i64)
        self.order = np.zeros(n, i64)
        self.indeg = np.zeros(n, i64)
        self.path = np.zeros(n, i64)
        self.r2 = np.zeros(n, i64)
        self.q2 = np.zeros(n, i64)
        self.order2 = np.zeros(n, i64)
        self.best_val[0] = self._current_value()

    def _set_current(self, tt: Timetable) -> None:
        """Load a timetable's modes and machine sequences as the current solution."""
        self.mode[:] = tt.mode
        self.machine = self.mode_machine[self.mode_ptr[:-1] + self.mode]
        self.dur = self.mode_dur[self.mode_ptr[:-1] + self.mode]
        self.mach_first[:] = -1
        self.mach_prev[:] = -1
        self.mach_next[:] = -1
        order = np.lexsort((np.arange(self.n), np.array(tt.start), self.machine))
        for a, b in itertools.pairwise(order):
            if self.machine[a] == self.machine[b]:
                self.mach_next[a] = b
                self.mach_prev[b] = a
        for i in order[::-1]:
            self.mach_first[self.machine[i]] = i

    def _current_value(self) -> int:
        val = _evaluate(self.n, self.job_prev, self.job_next, self.mach_prev, self.mach_next, self.dur, self.release,
                        self.r, self.q, self.order, self.indeg)
        if val < 0:
            raise ValueError("timetable has a cyclic machine order")
        return int(val)

    def adopt(self, tt: Timetable) -> None:
        """Continue from ``tt`` (e.g. found by CP-SAT); it becomes the best if better."""
        self._set_current(tt)
        val = self._current_value()
        if val < self.best_val[0]:
            self.best_val[0] = val
            self.best_mode[:] = self.mode
            self.best_prev[:] = self.mach_prev
            self.best_next[:] = self.mach_next
            self.best_first[:] = self.mach_first

    def run(self, deadline: float, stop: Callable[[], bool] | None = None,
            on_improve: Callable[[int], None] | None = None, between: Callable[[], None] | None = None) -> int:
        """Iterate until ``deadline`` (monotonic seconds) or ``stop()``; returns the best makespan."""
        chunk = max(50, 200_000 // max(1, self.n))
        last = int(self.best_val[0])
        while time.monotonic() < deadline and not (stop is not None and stop()):
            _tabu_chunk(
                self.n, self.job_prev, self.job_next, self.release, self.mode_ptr, self.mode_machine, self.mode_dur,
                self.mode, self.machine, self.dur, self.mach_prev, self.mach_next, self.mach_first,
                self.best_mode, self.best_prev, self.best_next, self.best_first, self.best_val,
                self.tabu_arc, self.tabu_mach, self.state, chunk, self.seed,
                self.r, self.q, self.order, self.indeg, self.path, self.r2, self.q2, self.order2,
            )
            if int(self.best_val[0]) < last:
                last = int(self.best_val[0])
                if on_improve is not None:
                    on_improve(last)
            if between is not None:
                between()
        return int(self.best_val[0])

    @property
    def iterations(self) -> int:
        return int(self.state[0])

    def best_timetable(self) -> Timetable:
        """The best solution found, as a semi-active timetable."""
        n = self.n
        mode = self.best_mode.copy()
        g = self.mode_ptr[:-1] + mode
        dur = self.mode_dur[g]
        r = np.zeros(n, np.int64)
        q = np.zeros(n, np.int64)
        val = _evaluate(n, self.job_prev, self.job_next, self.best_prev, self.best_next, dur, self.release,
                        r, q, np.zeros(n, np.int64), np.zeros(n, np.int64))
        assert val >= 0
        start = [int(x) for x in r]
        end = [int(x) for x in r + dur]
        return Timetable([int(x) for x in mode], start, end, [0] * n, True, [])
