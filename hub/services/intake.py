"""What one hub process serving callers holds: a Runtime, the connector registry, one Acceptor, and the
background relay; and the intake itself (authenticate, authorize, submit) that REST and SOAP both call, so both
feed exactly the same pipeline. Refusals are ``RejectedError``s; ``hub.api`` turns them into HTTP answers.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NoReturn

from prometheus_client.core import Metric

from broker.base import BrokerError
from hub.config import Settings
from hub.errors import AccessDeniedError, Issue, RejectedError, UnauthenticatedError
from hub.exchange.pipeline import Accepted, Checked, GroupCommitter, Relay
from hub.metrics import ACCEPT_SECONDS, ACCEPTED, REJECTED, StoreCollector
from hub.registry.spec import DEFAULT_PROFILE
from hub.runtime import Runtime
from hub.security.envelope import DEFAULT_FRESHNESS, EnvelopeHeader, peek_header
from hub.services.callers import ADMIN, CONNECTOR, OPERATOR, Caller
from hub.xmlparse import parse_xml

log = logging.getLogger(__name__)


class SerializedBroker:
    """A broker shared by request threads and the relay thread: one call at a time (brokers are not
    thread-safe; see ``broker.base.Broker``)."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._broker, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return text or None


class HubService:
    """One per process. Thread-safe: request threads call ``submit`` concurrently.

    ``gauges``: more Prometheus families for ``metrics`` (the operator page's), read with the store's."""

    def __init__(self, settings: Settings, gauges: Callable[[HubService], Sequence[Metric]] | None = None) -> None:
        self.settings = settings
        self.runtime = Runtime.open(settings)
        self.runtime.broker = SerializedBroker(self.runtime.broker)  # type: ignore[assignment]
        self.store = self.runtime.store
        self.broker = self.runtime.broker
        self.registry = self.runtime.registry()
        self.limits = self.runtime.limits()
        self.acceptor = self.runtime.acceptor()
        self.committer = GroupCommitter(self.acceptor)
        self.relay = Relay(self.store, self.broker, every_s=settings.relay_interval_s)
        self.metrics = StoreCollector(self.store, gauges=None if gauges is None else partial(gauges, self))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refreshed = time.monotonic()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background thread: outbox relay, and periodic reload of routes and certificates."""
        self._thread = threading.Thread(target=self._background, name="hub-relay", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread, flush the group committer, close store and broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.committer.close()
        self.runtime.close()

    def _background(self) -> None:
        tick = min(self.settings.relay_interval_s, self.settings.registry_refresh_s, 1.0)
        while not self._stop.wait(tick):
            try:
                self.relay.maybe_run()
                if time.monotonic() - self._refreshed >= self.settings.registry_refresh_s:
                    self.refresh()
            except Exception:  # keep the thread alive whatever happens; the next tick tries again
                log.exception("background relay/refresh failed")

    # ------------------------------------------------------------ registry-derived state

    def refresh(self) -> None:
        """Reload routing and pinned certificates from the registry (after a change, or periodically)."""
        self.runtime.refresh()
        self._refreshed = time.monotonic()

    # ------------------------------------------------------------ who is calling

    def authenticate(self, api_key: str | None) -> Caller:
        """The caller owning ``api_key``, or ``UnauthenticatedError`` (none sent, unknown, connector disabled)."""
        if not api_key:
            raise UnauthenticatedError(
                "send your API key in the X-Api-Key header",
                [Issue("/headers/X-Api-Key", "api-key-required", "no API key was sent")],
            )
        for role, key, name in (
            (ADMIN, _secret(self.settings.admin_api_key), self.settings.admin_name),
            (OPERATOR, _secret(self.settings.operator_api_key), self.settings.operator_name),
        ):
            if key is not None and hmac.compare_digest(key.encode(), api_key.encode()):
                return Caller(role, name)
        connector = self.registry.authenticate(api_key)
        if connector is None or not getattr(connector, "enabled", True):
            raise UnauthenticatedError(
                "the API key is unknown or its connector is disabled",
                [Issue("/headers/X-Api-Key", "api-key-unknown", "unknown API key")],
            )
        return Caller(CONNECTOR, connector.code, connector)

    # ------------------------------------------------------------ intake

    def authorizer(self, caller: Caller) -> Callable[[EnvelopeHeader], None]:
        """The check run on each header: only connectors send, and only what the registry grants them."""

        def authorize(header: EnvelopeHeader) -> None:
            if caller.connector is None:
                raise AccessDeniedError(
                    "only connectors submit envelopes (the admin and operator keys cannot)",
                    [Issue("/headers/X-Api-Key", "sender-is-caller", "the caller is not a connector")],
                    message_id=header.message_id,
                )
            issues = self.registry.authorize(caller.connector, header)
            if issues:
                raise AccessDeniedError(
                    f"{caller.code} may not send this message: {issues[0].message}",
                    issues,
                    message_id=header.message_id,
                )

        return authorize

    @staticmethod
    def profiles(caller: Caller) -> Callable[[EnvelopeHeader], str]:
        """The mapping profile the calling connector declared for each type it sends (``canonical`` by
        default): a ministry with ``mapping: {dossier.status: ministry-steps}`` may send ``<BuocXuLy>`` bodies."""

        def profile(header: EnvelopeHeader) -> str:
            if caller.connector is None:
                return DEFAULT_PROFILE
            return caller.connector.spec.profile_for(header.message_type)

        return profile

    def submit(self, caller: Caller, data: bytes, channel: str = "rest") -> Accepted:
        """Parse (hardened), pre-authorize on the unverified header, verify with the pinned certificates,
        authorize again on the signed header, route, store, publish. Raises ``RejectedError``."""
        started = time.perf_counter()
        try:
            outcome = self.committer.submit(partial(self._check, caller, data), data).result(self.committer.timeout_s)
            if isinstance(outcome, RejectedError):
                raise outcome
        except RejectedError as exc:
            return self._rejected(caller, exc)
        return self._accepted(caller, channel, started, outcome)

    async def submit_async(self, caller: Caller, data: bytes, channel: str = "rest") -> Accepted:
        """``submit`` for the event loop: checked and committed with the requests of the same turn of the loop,
        on the loop's thread (``GroupCommitter.submit_async``)."""
        started = time.perf_counter()
        try:
            outcome = await self.committer.submit_async(partial(self._check, caller, data), data)
            if isinstance(outcome, RejectedError):
                raise outcome
        except RejectedError as exc:
            return self._rejected(caller, exc)
        return self._accepted(caller, channel, started, outcome)

    def _check(self, caller: Caller, data: bytes) -> Checked:
        """Parse (hardened) once, deny early (403) on the unverified header before spending a signature check,
        then verify, authorize again on the signed header, and route (``Acceptor.check``)."""
        authorize = self.authorizer(caller)
        root = parse_xml(data, self.limits)
        unverified = peek_header(root)
        if unverified is not None:
            authorize(unverified)
        fresh = DEFAULT_FRESHNESS if caller.connector is None else caller.connector.spec.freshness
        return self.acceptor.check(data, authorize, self.profiles(caller), parsed=root, freshness=fresh)

    def _rejected(self, caller: Caller, exc: RejectedError) -> NoReturn:
        REJECTED.labels(caller.code or caller.name, exc.kind).inc()
        raise exc

    def _accepted(self, caller: Caller, channel: str, started: float, accepted: Accepted) -> Accepted:
        ACCEPTED.labels(caller.code or caller.name, channel).inc()
        ACCEPT_SECONDS.labels(channel).observe(time.perf_counter() - started)
        return accepted

    def reject_metric(self, caller_label: str, kind: str) -> None:
        """Count a submission refused before it reached ``submit`` (no key, wrong media type, too large)."""
        REJECTED.labels(caller_label, kind).inc()

    # ------------------------------------------------------------ operations

    def ready(self) -> dict[str, str]:
        """``ok`` or why not, for the store and the broker (``/readyz``)."""
        checks: dict[str, str] = {}
        try:
            self.store.ping()
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unreachable: {type(exc).__name__}"
        try:
            self.broker.stats(sorted(self.runtime.routing.destinations)[:1])
            checks["broker"] = "ok"
        except (BrokerError, Exception) as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        return checks


__all__ = ["ADMIN", "CONNECTOR", "OPERATOR", "Caller", "HubService"]
