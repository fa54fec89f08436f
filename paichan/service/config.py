"""The live service's configuration (``paichan serve --config paichan.toml``).

Clients with API keys and roles, webhook secrets, replanning rules, publishing and the
OPC UA endpoints. For a quick start the environment suffices: ``PAICHAN_API_KEY`` (a
planner key) and ``PAICHAN_WEBHOOK_SECRET`` (``whsec_`` + base64).

```toml
[[clients]]
name = "mes-hall-2"
key = "a-long-random-key"
role = "mes"            # mes: push events; planner: replan, release, pin, brake; viewer: read

[webhooks]
secrets = ["whsec_..."] # several during a rotation

[replanning]
auto = true             # replan the owning line when an event changes the plan
time_limit = 2.0        # seconds per automatic repair
freeze_minutes = 30     # started and near-term work never moves
auto_release_max_moves = 10   # auto-release if fewer operations move and no order gets later than due; 0: never

[publish]
outbox = "outbox"       # released plans as B2MML per plant
b2mml_version = "0700"
url = "https://mes.example/plans"   # optional: POSTed there, signed with secret
secret = "whsec_..."

[[opcua]]
endpoint = "opc.tcp://plc-hall2:4840"
machines = [{ machine = "P1/L1/M1", node = "ns=2;s=Press1", model = "machinery" }]
```
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paichan.adapters.opcua import OpcUaConfig
from paichan.domain.errors import validation_messages

Role = Literal["mes", "planner", "viewer"]


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    key: str = Field(min_length=16, description="the API key (Authorization: Bearer KEY); at least 16 characters")
    role: Role


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secrets: list[str] = Field(default_factory=list)
    tolerance_s: int = Field(default=300, gt=0)


class ReplanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto: bool = True
    time_limit: float = Field(default=2.0, gt=0)
    freeze_minutes: int = Field(default=30, ge=0)
    auto_release_max_moves: int = Field(default=0, ge=0)
    stability: int = Field(default=50, ge=0, description="weight of sum |start change| (minutes) in every replan "
                           "(1 and 50 compared in bench/results/repair.md)")


class PublishConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outbox: str | None = "outbox"
    b2mml_version: Literal["0600", "0700"] = "0700"
    url: str | None = None
    secret: str | None = None


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="paichan", pattern=r"^[A-Za-z0-9_.-]+$", description="Redis key prefix segment")
    clients: list[ClientConfig] = Field(default_factory=list)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
    replanning: ReplanConfig = Field(default_factory=ReplanConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    opcua: list[OpcUaConfig] = Field(default_factory=list)
    max_body_bytes: int = Field(default=2_000_000, gt=0)

    def with_environment(self) -> ServiceConfig:
        """Add ``PAICHAN_API_KEY`` (a planner) and ``PAICHAN_WEBHOOK_SECRET`` from the environment."""
        out = self.model_copy(deep=True)
        key = os.environ.get("PAICHAN_API_KEY")
        if key and not any(c.key == key for c in out.clients):
            out.clients.append(ClientConfig(name="env-planner", key=key, role="planner"))
        secret = os.environ.get("PAICHAN_WEBHOOK_SECRET")
        if secret and secret not in out.webhooks.secrets:
            out.webhooks.secrets.append(secret)
        return out


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file and the field."""


def load_config(path: str | Path | None) -> ServiceConfig:
    """Read the TOML config (or defaults when ``path`` is None) and add the environment's key and secret."""
    if path is None:
        return ServiceConfig().with_environment()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    try:
        return ServiceConfig.model_validate(data).with_environment()
    except ValidationError as e:
        raise ConfigError(f"{p}: " + "; ".join(validation_messages(e, 10, top=""))) from None
