"""Sharing sessions end to end: agents on Ray, the host, real ACL users, the ledger, both plans and the checker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import redis

from paichan.bus.server import EmbeddedRedis
from paichan.checker import check
from paichan.domain import Problem, Schedule
from paichan.service.cli import main
from paichan.sharing.acl import Keys
from paichan.sharing.enterprise import AgentParams
from paichan.sharing.host import SessionHost
from paichan.sharing.model import load_sharing
from paichan.sharing.session import run_demo

ROOT = Path(__file__).resolve().parents[1]
SHARING_3 = ROOT / "scenarios" / "sharing_3.yaml"


def ledger(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]


def plan(out: Path, eid: str) -> tuple[Problem, Schedule]:
    d = json.loads((out / "plans" / f"{eid}.json").read_text(encoding="utf-8"))
    return Problem.model_validate(d["problem"]), Schedule.model_validate(d["schedule"])


def assert_contracts_in_both_plans(out: Path, entries: list[dict[str, Any]], gone: set[str] = frozenset()) -> None:
    """Every contract not cancelled is in the buyer's plan (external, done by the promise) and the seller's."""
    cancelled = {e["body"]["award_id"] for e in entries if e["kind"] == "cancellation"}
    for c in (e["body"] for e in entries if e["kind"] == "contract"):
        aid = c["award_id"]
        for eid in ({c["buyer"], c["seller"]} - gone):
            _, schedule = plan(out, eid)
            ops = [s for s in schedule.operations if s.resource == f"ext-{aid}" or s.order == f"x-{aid}"]
            if aid in cancelled:
                assert ops == [], f"cancelled award {aid} still in {eid}'s plan"
                continue
            assert len(ops) == 1, (eid, aid)
            assert ops[0].end <= c["completion"]
            if eid == c["buyer"]:
                assert ops[0].resource == f"ext-{aid}" and ops[0].end == c["completion"]
            else:
                assert ops[0].order == f"x-{aid}"


def test_demo_cli_sharing_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["session", "demo", str(SHARING_3), "--output", str(out)]) == 0
    entries = ledger(out)
    kinds = {e["kind"] for e in entries}
    assert {"offer", "request", "bid", "award", "contract"} <= kinds
    kpis = json.loads((out / "kpis.json").read_text(encoding="utf-8"))
    sc = load_sharing(SHARING_3)
    assert set(kpis["enterprises"]) == {e.id for e in sc.enterprises}
    ents = kpis["enterprises"]
    buyer = max(ents, key=lambda e: ents[e]["without_sharing"]["weighted_tardiness"])
    before = ents[buyer]["without_sharing"]["weighted_tardiness"]
    assert before > 0
    assert ents[buyer]["with_sharing"]["weighted_tardiness"] <= 0.5 * before, "the overloaded one gains >= 50%"
    for eid, k in ents.items():
        assert k["with_sharing"]["net_cost"] <= k["without_sharing"]["net_cost"], f"{eid} ends worse off"
        problem, schedule = plan(out, eid)
        assert check(problem, schedule).ok, eid
        # the no-sharing baseline is what its own problem gives, checked as well
        assert isinstance(k["without_sharing"]["weighted_tardiness"], int)
    assert_contracts_in_both_plans(out, entries)
    money = sum(k["with_sharing"]["revenue"] - k["with_sharing"]["cost"] for k in ents.values())
    assert abs(money) < 1e-6, "what buyers paid, sellers received"
    # credentials were written and revoked at close
    for e in sc.enterprises:
        url = (out / "credentials" / f"{e.id}.url").read_text(encoding="utf-8").strip()
        assert url.startswith("redis://paichan-")


def test_member_crash_mid_session_leaves_no_dangling_award(tmp_path: Path) -> None:
    """The seller of the first contract crashes (its actor is killed): the host cancels what it promised."""
    sc = load_sharing(SHARING_3)
    killed: list[str] = []

    def crash_first_seller(host: SessionHost, actors: dict[str, Any]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            host.step(block_ms=50)
            binding = [a for a in host.awards.values() if a.state == "binding"]
            if binding:
                killed.append(binding[0].seller)
                ray.kill(actors[binding[0].seller])
                return
        raise AssertionError("no contract within 120 s")

    out = tmp_path / "crash"
    kpis = run_demo(sc, out, keep_users=True, progress=lambda m: None, silence_timeout=3.0,
                    after_open=crash_first_seller)
    assert killed and kpis["network"]["left"] == killed
    entries = ledger(out)
    gone = killed[0]
    awards = {e["body"]["award_id"]: e for e in entries if e["kind"] == "award"}
    ended = {e["body"]["award_id"]: e["body"] for e in entries if e["kind"] == "cancellation"}
    dangling = [aid for aid, e in awards.items() if gone in e["parties"] and aid not in ended]
    assert dangling == []
    binding_cancelled = [b for b in ended.values() if "compensation" in b]
    assert binding_cancelled and all(b["compensation"]["payer"] == gone for b in binding_cancelled)
    assert_contracts_in_both_plans(out, entries, gone={gone})
    for eid in kpis["enterprises"]:
        problem, schedule = plan(out, eid)
        assert check(problem, schedule).ok, eid
    assert gone not in kpis["enterprises"]


def test_live_views_match_acls_and_nothing_private_crosses(session_redis: EmbeddedRedis, tmp_path: Path) -> None:
    """Each member's view holds its own entries and the public awards only (others' views are refused),
    and nothing a member receives names another member's orders, customers or lines."""
    sc = load_sharing(SHARING_3)
    checked: list[str] = []

    def inspect(host: SessionHost, actors: dict[str, Any]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(a.state == "binding" for a in host.awards.values()):
            host.step(block_ms=50)
        urls = {e: (tmp_path / "live" / "credentials" / f"{e}.url").read_text().strip() for e in host.members}
        for e, url in urls.items():
            r = redis.Redis.from_url(url)
            view = [json.loads(f[b"entry"]) for _, f in r.xrange(host.keys.view(e))]
            assert view and all(x["public"] or e in x["parties"] for x in view)
            for other in host.members:
                if other != e:
                    with pytest.raises(redis.exceptions.NoPermissionError):
                        r.xrange(host.keys.view(other))
            checked.append(e)

    old = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = session_redis.url
    try:
        kpis = run_demo(sc, tmp_path / "live", progress=lambda m: None, after_open=inspect,
                        params=AgentParams(solve_time=0.5), keep_users=True)
    finally:
        if old is None:
            os.environ.pop("REDIS_URL")
        else:
            os.environ["REDIS_URL"] = old
    assert sorted(checked) == sorted(e.id for e in sc.enterprises)
    assert kpis["network"]["contracts"] >= 1
    # everything each member could receive: its inbox, its ledger view and the public stream
    admin = redis.Redis.from_url(session_redis.url)
    k = Keys(kpis["session"])
    private = {e.id: {o.id for o in e.orders} | {o.customer for o in e.orders if o.customer} | {ln.id for ln in e.lines}
               for e in sc.enterprises}
    for e in sc.enterprises:
        received = [f for key in (k.inbox(e.id), k.view(e.id), k.public)
                    for _, fields in admin.xrange(key) for f in fields.values()]
        text = "\n".join(v.decode() for v in received)
        assert '"bid"' in text or e.id != "acme"
        for other, names in private.items():
            if other != e.id:
                leaked = [n for n in names if f'"{n}"' in text or f'"{n}/' in text]
                assert leaked == [], (e.id, other, leaked)
        bids = [json.loads(v) for v in received if b'"kind": "bid"' in v]
        assert all(e.id in b["parties"] for b in bids), "a member sees no bid it is not party to"
    # --keep-users: the users outlive the close
    for e in sc.enterprises:
        url = (tmp_path / "live" / "credentials" / f"{e.id}.url").read_text().strip()
        assert redis.Redis.from_url(url).ping()
    SessionHost(admin, session_redis.url, kpis["session"], []).revoke_users()
    for e in sc.enterprises:
        url = (tmp_path / "live" / "credentials" / f"{e.id}.url").read_text().strip()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url).ping()


def test_demo_bad_scenario_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    text = SHARING_3.read_text(encoding="utf-8").replace("capability: milling", "capability: welding", 1)
    bad.write_text(text, encoding="utf-8")
    assert main(["session", "demo", str(bad), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "welding" in err and "line " in err and "Traceback" not in err
    assert main(["session", "demo", str(tmp_path / "missing.yaml"), "--output", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paichan.service.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_workflow_open_join_offer_request_status_close(session_redis: EmbeddedRedis, tmp_path: Path) -> None:
    """The multi-process workflow: a host, two members' agents, a planner's offer and request, status, close."""
    env = os.environ | {"REDIS_URL": session_redis.url}
    scen = tmp_path / "two.yaml"
    scen.write_text("""
name: two
enterprises:
  - id: buyer
    tardiness_cost: 5
    lines: [{id: m1, capabilities: [milling]}]
    orders:
      - {id: P1, customer: Private Customer One, due: 60, steps: [{capability: milling, duration: 60}]}
      - {id: P2, customer: Private Customer Two, due: 60, steps: [{capability: milling, duration: 60}]}
  - id: seller
    lines: [{id: s1, capabilities: [milling]}]
""", encoding="utf-8")
    out = tmp_path / "sess"
    host = subprocess.Popen([sys.executable, "-m", "paichan.service.cli", "session", "open", "--enterprises",
                             "buyer,seller", "--session", "clitest", "--output", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    members: list[subprocess.Popen[str]] = []
    try:
        cred = out / "credentials"
        deadline = time.monotonic() + 60
        while not (cred / "seller.url").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        for eid in ("buyer", "seller"):
            members.append(subprocess.Popen(
                [sys.executable, "-m", "paichan.service.cli", "session", "join", "clitest", "--credentials",
                 str(cred / f"{eid}.url"), "--scenario", str(scen), "--manual", "--output", str(tmp_path / "m")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        r = redis.Redis.from_url(session_redis.url)
        k = Keys("clitest")
        deadline = time.monotonic() + 90
        while not all(r.exists(k.priv(e, "alive")) for e in ("buyer", "seller")) and time.monotonic() < deadline:
            time.sleep(0.3)
        res = _cli("session", "offer", "clitest", "--credentials", str(cred / "seller.url"), "--capability",
                   "milling", "--window", "0", "600", "--price", "0.5", env=env)
        assert res.returncode == 0, res.stderr
        time.sleep(2.0)
        res = _cli("session", "request", "clitest", "--credentials", str(cred / "buyer.url"), "--operation",
                   "P2/0", env=env)
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 60
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            res = _cli("session", "status", "clitest", "--credentials", str(cred / "buyer.url"), "--json", env=env)
            assert res.returncode == 0, res.stderr
            view = json.loads(res.stdout)
            if any(e["kind"] == "contract" for e in view["ledger"]):
                break
            time.sleep(1.0)
        assert any(e["kind"] == "contract" for e in view["ledger"]), view
        assert view["offers"] and view["offers"][0]["from"] == "seller"
        res = _cli("session", "status", "clitest", env=env)
        assert res.returncode == 0 and "contract 1" in res.stdout, res.stdout + res.stderr
        res = _cli("session", "close", "clitest", env=env)
        assert res.returncode == 0, res.stderr
        assert host.wait(timeout=30) == 0
        for m in members:
            assert m.wait(timeout=60) == 0, m.stderr.read() if m.stderr else ""
        buyer = json.loads((tmp_path / "m" / "buyer.json").read_text())
        assert buyer["with_sharing"]["weighted_tardiness"] < buyer["without_sharing"]["weighted_tardiness"]
        assert (out / "ledger.jsonl").exists()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url((cred / "buyer.url").read_text().strip()).ping()
        # a member command with no agent running is refused with the reason
        res = _cli("session", "offer", "clitest", "--credentials", str(cred / "seller.url"), "--capability",
                   "milling", "--window", "0", "600", "--price", "0.5", env=env)
        assert res.returncode == 2 and "refused these credentials" in res.stderr
    finally:
        for proc in [host, *members]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
