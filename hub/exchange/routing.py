"""The routing table: which destination connectors get a message, by message type and sender.

Loaded from a YAML file for now (``LIENTHONG_ROUTES_FILE``); the connector registry replaces it later.

```yaml
destinations:
  000.00.00.G22:
    endpoint: http://127.0.0.1:9001/inbox
    retry_delays_s: [10, 60, 300, 1800, 7200]
    concurrency: 4
    timeout_s: 10
routes:
  - {type: dossier.sync, sender: "*", to: [000.00.00.G22]}
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.base import Broker, RetryPolicy
from hub.errors import RoutingError
from hub.security.credentials import Credentials, url_has_userinfo

ANY = "*"


class DestinationConfig(BaseModel):
    """How to reach one destination connector and how patiently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str
    transport: str = "http"
    kind: str = ""  # the connector kind (national_portal, provincial, …): picks the adapter
    credentials: Credentials | None = Field(None, repr=False)  # login for session partners; never logged
    retry_delays_s: tuple[float, ...] = (10.0, 60.0, 300.0, 1800.0, 7200.0)
    jitter: float = Field(0.2, ge=0, lt=1)
    concurrency: int = Field(4, ge=1, le=256)
    timeout_s: float = Field(10.0, gt=0)
    circuit_failures: int = Field(5, ge=1)
    circuit_cooldown_s: float = Field(30.0, gt=0)
    profile: str | None = None  # the connector's partner profile (mappings.profiles), None: the kind's own format
    profile_values: dict[str, str] = Field(default_factory=dict, repr=False)
    #: A notification connector's own templates (name → Jinja2 text, ``ConnectorSpec.templates``)
    templates: dict[str, str] = Field(default_factory=dict, repr=False)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(delays_s=self.retry_delays_s, jitter=self.jitter)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: str
    sender: str = ANY
    to: tuple[str, ...]


class RoutingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destinations: dict[str, DestinationConfig] = {}
    routes: list[Route] = []

    @field_validator("destinations")
    @classmethod
    def _no_userinfo(cls, value: dict[str, DestinationConfig]) -> dict[str, DestinationConfig]:
        """No credentials in an endpoint URL, as a connector spec refuses them (``endpoint-url-userinfo``): the
        URL is shown in messages; the error names the destination, never the URL."""
        for code, config in value.items():
            if url_has_userinfo(config.endpoint):
                raise ValueError(f"{code}: the endpoint URL carries user information (user:password@host); give "
                                 "credentials as credentials {username, password}, never in the URL")  # fmt: skip
        return value


@dataclass
class RoutingTable:
    """Message type + sender → destinations, plus each destination's delivery settings."""

    destinations: dict[str, DestinationConfig] = field(default_factory=dict)
    routes: Sequence[Route] = ()
    #: Each registered connector's unit (agency code), by connector code: what a partner is told a message's
    #: sender acts for, whatever the body claims (the connector registry fills it; a routing file has none).
    units: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = {d for r in self.routes for d in r.to} - set(self.destinations)
        if unknown:
            raise RoutingError(f"routes name destinations that are not declared: {', '.join(sorted(unknown))}")
        self._index: dict[tuple[str, str], tuple[str, ...]] = {}
        for route in self.routes:
            key = (route.type, route.sender)
            self._index[key] = tuple(dict.fromkeys((*self._index.get(key, ()), *route.to)))

    def destinations_for(self, message_type: str, sender: str) -> tuple[str, ...]:
        """Destinations for this message; a sender never receives its own message back."""
        found = (*self._index.get((message_type, sender), ()), *self._index.get((message_type, ANY), ()))
        return tuple(d for d in dict.fromkeys(found) if d != sender)

    def notifying(self, destinations: Sequence[str], model: BaseModel | None) -> tuple[str, ...]:
        """``destinations`` without the notification connectors (kind ``notification``) that do not tell the
        applicant of this update: only a dossier update whose status is one of the connector's events (profile
        value ``events``, ``mappings.notification``) is queued for it, so a step that concerns no applicant makes
        no delivery. Every other destination is kept."""
        from mappings.notification import connector_events, event_of

        event = None
        kept = []
        for code in destinations:
            config = self.destinations.get(code)
            if config is not None and config.kind == "notification":
                event = event or event_of(model)
                if event is None or event not in connector_events(config.profile, config.profile_values.get("events")):
                    continue
            kept.append(code)
        return tuple(kept)

    def notifiers(self, destinations: Sequence[str]) -> tuple[str, ...]:
        """The notification connectors (kind ``notification``) among ``destinations``: not queued an amendment, a
        status restated (``hub.dossier.status_machine.Decision.amendment``), which the applicant was told of."""
        return tuple(code for code in destinations if (c := self.destinations.get(code)) and c.kind == "notification")

    def declare(self, broker: Broker) -> None:
        """Declare every destination's queues with its own retry ladder (idempotent)."""
        for code, config in sorted(self.destinations.items()):
            broker.declare([code], config.retry_policy)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> RoutingTable:
        try:
            parsed = RoutingFile.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise RoutingError(f"invalid routing table: {problems}") from None
        return cls(parsed.destinations, parsed.routes)

    @classmethod
    def from_file(cls, path: Path) -> RoutingTable:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise RoutingError(f"cannot read routing file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise RoutingError(f"routing file {path} is not valid YAML: {exc}") from None
        return cls.from_mapping(data)
