"""ray_cluster.yaml: valid for Ray's cluster launcher, and safe (no cluster needed; see docs/CLUSTER.md)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CONFIG = Path(__file__).resolve().parent.parent / "ray_cluster.yaml"
HEAD_KEYS = ("head_setup_commands", "head_start_ray_commands")
#: commands that run on the workers (the common ones run on the head too)
WORKER_KEYS = ("initialization_commands", "setup_commands", "worker_setup_commands", "worker_start_ray_commands")
COMMAND_KEYS = ("initialization_commands", "setup_commands", *HEAD_KEYS, "worker_setup_commands",
                "worker_start_ray_commands")


@pytest.fixture(scope="module")
def text() -> str:
    return CONFIG.read_text()


@pytest.fixture(scope="module")
def cfg(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


def commands(cfg: dict[str, Any], *keys: str) -> list[str]:
    return [c for k in keys for c in cfg.get(k) or []]


def redis_launches(cmds: list[str]) -> list[str]:
    """The commands that start a redis-server (not the ones installing or stopping it)."""
    return [c for c in cmds if re.search(r"(^|[;&|(]\s*)redis-server\s", c)]


def test_valid_for_rays_own_schema(cfg: dict[str, Any]) -> None:
    spec = importlib.util.find_spec("ray")  # the schema `ray up` itself validates against (without importing ray)
    assert spec and spec.origin
    schema_path = Path(spec.origin).parent / "autoscaler" / "ray-schema.json"
    jsonschema.validate(cfg, json.loads(schema_path.read_text()))


def test_nothing_listens_on_every_interface_unprotected(text: str) -> None:
    assert "0.0.0.0" not in text
    assert not re.search(r"protected-mode\s+no", text)


def test_redis_only_on_the_head_bound_to_its_address_and_loopback(cfg: dict[str, Any]) -> None:
    for c in commands(cfg, *WORKER_KEYS):
        assert "redis" not in c, f"Redis (or its install) runs on the workers: {c}"
    launches = redis_launches(commands(cfg, *HEAD_KEYS))
    assert len(launches) == 1, launches
    launch = launches[0]
    bind = re.search(r"--bind\s+(.+?)\s+--", launch)
    assert bind and "127.0.0.1" in bind.group(1).split(), launch
    assert "head_ip" in bind.group(1), "bind the head's cluster address (provider.head_ip), not every interface"
    assert re.search(r"--protected-mode\s+yes", launch)
    assert re.search(r"--appendonly\s+yes", launch) and re.search(r"--appendfsync\s+always", launch)
    head_ip_cmd = next(c for c in commands(cfg, *HEAD_KEYS) if c.rstrip().endswith("> ~/.paichan/head_ip"))
    assert "['provider']['head_ip']" in head_ip_cmd and "ray_bootstrap_config.yaml" in head_ip_cmd


def test_redis_server_asks_for_a_password(cfg: dict[str, Any]) -> None:
    head = commands(cfg, *HEAD_KEYS)
    launches = redis_launches(head)
    assert launches
    for launch in launches:
        if re.search(r"--requirepass|--aclfile|--user\s", launch):
            continue
        conf = re.search(r"redis-server\s+(\S+\.conf)", launch)
        assert conf, f"redis-server started with neither a password nor a config file: {launch}"
        writers = [c for c in head if "requirepass" in c and f"> {conf.group(1)}" in c]
        assert writers, f"nothing writes requirepass into {conf.group(1)}"
        assert all("umask 077" in c and "chmod 600" in c for c in writers)
    assert any("openssl rand" in c and "redis.pass" in c for c in head)
    url = [c for c in head if "> ~/.paichan/redis.url" in c]
    assert url and all("umask 077" in c and "chmod 600" in c for c in url)


def test_rsync_excludes_local_environments_and_outputs(cfg: dict[str, Any]) -> None:
    excluded = set(cfg.get("rsync_exclude") or [])
    for pattern in (".venv/", "out/", ".git/", "bench/.cache/", "webvendor/node_modules/", "__pycache__/", "*.pyc"):
        assert pattern in excluded, pattern


def test_every_apt_get_install_follows_an_update(cfg: dict[str, Any]) -> None:
    for key in COMMAND_KEYS:
        updated = False
        for c in cfg.get(key) or []:
            for m in re.finditer(r"apt-get\s+(?:-\S+\s+)*(update|install)", c):
                if m.group(1) == "update":
                    updated = True
                else:
                    assert updated, f"{key}: apt-get install without apt-get update before it: {c}"


def test_ray_token_authentication_on_every_node(cfg: dict[str, Any]) -> None:
    mounts = cfg.get("file_mounts") or {}
    assert any(k.endswith("/.ray/auth_token") and v == "~/.ray/auth_token" for k, v in mounts.items()), mounts
    assert any(re.search(r"echo\s+'export RAY_AUTH_MODE=token'\s*>>\s*~/\.bashrc", c)
               for c in commands(cfg, "initialization_commands")), "drivers in `ray attach` shells need it too"
    starts = [c for c in commands(cfg, "head_start_ray_commands", "worker_start_ray_commands") if "ray start" in c]
    assert len(starts) == 2, starts
    for c in starts:
        assert c.startswith("RAY_AUTH_MODE=token "), c


def test_what_the_walk_through_found_stays_fixed(cfg: dict[str, Any], text: str) -> None:
    """Faults found walking docs/CLUSTER.md through on three simulated machines (its Status note)."""
    head = " ".join(commands(cfg, "head_setup_commands"))
    assert "redis://default:%s@" in head  # redis-cli -u sends an empty user name for redis://:PASSWORD@ (WRONGPASS)
    init = " ".join(commands(cfg, "initialization_commands"))
    assert '.venv/bin:$PATH' in init  # `ray down` runs `ray stop` in a login shell: the venv's ray on its PATH
    assert "RAY_UP_enable_autoscaler_v2=0 ray up" in text  # autoscaler v2 stops the head of a local cluster
    assert ".mypy_cache/" in cfg["rsync_exclude"]
