"""What one hub process serving callers holds: a Runtime, the connector registry, one Acceptor, its publisher
thread (which alone uses the process's broker, and runs the outbox relay) and a thread reloading the registry;
and the intake itself (authenticate, authorize, submit) that REST and SOAP both call, so both feed exactly the
same pipeline. Refusals are ``RejectedError``s; ``hub.api`` turns them into HTTP answers; a store that cannot be
reached raises ``StoreUnavailableError`` (503).
"""

from __future__ import annotations

import gc
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, NoReturn, TypeVar, cast

from prometheus_client.core import Metric
from pydantic import BaseModel

from hub.config import Settings
from hub.errors import AccessDeniedError, Issue, RejectedError, UnauthenticatedError
from hub.exchange.pipeline import Accepted, Checked, GroupCommitter, Relay
from hub.exchange.publisher import Publisher
from hub.metrics import ACCEPT_SECONDS, ACCEPTED, REJECTED, StoreCollector
from hub.registry.spec import DEFAULT_PROFILE
from hub.runtime import Runtime
from hub.security.envelope import DEFAULT_FRESHNESS, EnvelopeHeader, peek_header
from hub.services.callers import ADMIN, CONNECTOR, OPERATOR, Caller
from hub.xmlparse import parse_xml

log = logging.getLogger(__name__)

#: Message types the asynchronous intake (REST ``/api/v1/messages`` and SOAP) refuses, each with its own door:
#: a citizen lookup reads personal data, so it goes only through the audited ``POST /api/v1/lookups``.
OWN_DOORS = {"citizen.lookup": "POST /api/v1/lookups"}


def refuse_own_door(header: EnvelopeHeader) -> None:
    """403 (rule ``lookup-through-lookups``) for a type that has its own door: the caller may well be granted
    the type, it is this entry that may not take it."""
    door = OWN_DOORS.get(header.message_type)
    if door is not None:
        raise AccessDeniedError(
            f"a {header.message_type} is answered only through {door} (audited), not queued",
            [Issue("/envelope/header/messageType", "lookup-through-lookups", f"send it to {door}")],
            message_id=header.message_id,
        )


def _through_own_doors(authorize: Callable[[EnvelopeHeader], None]) -> Callable[[EnvelopeHeader], None]:
    """``authorize`` preceded by ``refuse_own_door``, on the unverified and again on the signed header."""

    def check(header: EnvelopeHeader) -> None:
        refuse_own_door(header)
        authorize(header)

    return check


#: How long ``/readyz`` waits for the store's ping before it says ``store: down``.
STORE_PING_TIMEOUT_S = 2.0


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return text or None


_Service = TypeVar("_Service")


def _refuse_if(caller: Caller, header: EnvelopeHeader, issues: Sequence[Issue]) -> None:
    """403 naming the first of ``issues`` (what the registry found the caller may not do), if there are any."""
    if issues:
        raise AccessDeniedError(
            f"{caller.code} may not send this message: {issues[0].message}", issues, message_id=header.message_id
        )


class HubService:
    """One per process. Thread-safe: request threads call ``submit`` concurrently.

    The broker is opened lazily (the API starts while RabbitMQ is down) and used only by the publisher thread
    (``hub.exchange.publisher``); ``runtime.broker`` is its gateway. The relay in that thread republishes what
    was committed more than twice ``relay_interval_s`` ago and never confirmed.

    ``gauges``: more Prometheus families for ``metrics`` (the operator page's), read with the store's."""

    def __init__(self, settings: Settings, gauges: Callable[[HubService], Sequence[Metric]] | None = None) -> None:
        self.settings = settings
        self.runtime = Runtime.open(settings, lazy_broker=True)
        self.store = self.runtime.store
        every = settings.relay_interval_s
        self.relay = Relay(self.store, self.runtime.broker, grace_s=2 * every, every_s=every)
        self.publisher = Publisher(self.runtime.broker, relay=self.relay)
        self.runtime.broker = self.broker = self.publisher.gateway()
        self.registry = self.runtime.registry()
        self.limits = self.runtime.limits()
        self.acceptor = self.runtime.acceptor()
        self.acceptor.handoff = self.publisher  # commits hand their deliveries over, never publish themselves
        self.publisher.marks = self.acceptor  # confirmations come back to be marked with the next commit
        self.committer = GroupCommitter(
            self.acceptor, loop_max_bytes=settings.loop_check_max_bytes, budget_s=settings.loop_check_budget_s
        )
        self._store_ping: Future[None] | None = None
        self.metrics = StoreCollector(self.store, gauges=None if gauges is None else partial(gauges, self))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refreshed = time.monotonic()
        self._services: dict[Callable[[HubService], Any], Any] = {}
        self._services_lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the publisher thread (publish, outbox relay, broker pings) and the registry reload thread."""
        self.publisher.start()
        self._thread = threading.Thread(target=self._background, name="hub-refresh", daemon=True)
        self._thread.start()
        # What the process has built so far lives as long as it does: out of the cyclic collector's way, a full
        # collection (which holds the GIL, so the event loop too) only walks what requests created since.
        gc.freeze()

    def close(self) -> None:
        """Stop the reload thread, commit what the group committer holds, let the publisher publish what it holds
        and record the confirmations, then close the flows, store and broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.committer.close()
        self.publisher.close()
        for service in self._services.values():  # the flows' thread pools and partner sessions
            close = getattr(service, "close", None)
            if callable(close):
                close()
        self.runtime.close()

    def service(self, make: Callable[[HubService], _Service]) -> _Service:
        """The process's flow service that ``make`` builds (lookups, payment callbacks): made on first use, then
        shared, and closed with the hub."""
        with self._services_lock:
            if make not in self._services:
                self._services[make] = make(self)
            return cast(_Service, self._services[make])

    def _background(self) -> None:
        tick = min(self.settings.registry_refresh_s, 1.0)
        while not self._stop.wait(tick):
            try:
                if time.monotonic() - self._refreshed >= self.settings.registry_refresh_s:
                    self.refresh()
            except Exception as exc:  # keep the thread alive whatever happens; the next tick tries again
                log.warning("registry reload failed: %s", exc)

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
            _refuse_if(caller, header, self.registry.authorize(caller.connector, header))

        return authorize

    def body_authorizer(self, caller: Caller) -> Callable[[EnvelopeHeader, BaseModel | None], None]:
        """The check run on each verified, decoded body: dossier ownership (``Registry.authorize_dossier``) — a
        connector changes only dossiers it is party to, and speaks only for its own registered unit."""

        def authorize(header: EnvelopeHeader, body: BaseModel | None) -> None:
            if caller.connector is None:
                return  # refused by ``authorizer`` already
            _refuse_if(caller, header, self.registry.authorize_dossier(caller.connector, header, body))

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
        """``submit`` for the event loop: checked with the requests of the same turn of the loop, on the loop's
        thread, and committed with them by the loop-commit thread; one larger than ``loop_check_max_bytes`` is
        checked by the committer thread, so that the loop keeps answering (``GroupCommitter.submit_async``)."""
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
        authorize = _through_own_doors(self.authorizer(caller))
        root = parse_xml(data, self.limits)
        unverified = peek_header(root)
        if unverified is not None:
            authorize(unverified)
        fresh = DEFAULT_FRESHNESS if caller.connector is None else caller.connector.spec.freshness
        return self.acceptor.check(
            data, authorize, self.profiles(caller), parsed=root, authorize_body=self.body_authorizer(caller),
            freshness=fresh,
        )  # fmt: skip

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
        """``ok`` or ``down`` for the store and the broker (``/readyz``), in bounded time: the store is pinged (at
        most ``STORE_PING_TIMEOUT_S``, one ping at a time); the broker is not called at all, its state is what
        the publisher thread last saw (it pings the broker when idle)."""
        return {"store": self._store_state(), "broker": "ok" if self.publisher.state().ok else "down"}

    def _store_state(self) -> str:
        with self._services_lock:
            ping = self._store_ping
            if ping is None or ping.done():
                ping = self._store_ping = Future()
                threading.Thread(target=_ping, args=(self.store, ping), name="store-ping", daemon=True).start()
        try:
            ping.result(timeout=STORE_PING_TIMEOUT_S)
        except FutureTimeout:
            return "down"
        except Exception as exc:
            log.warning("store ping failed: %s", exc)
            return "down"
        return "ok"


def _ping(store: Any, done: Future[None]) -> None:
    try:
        store.ping()
    except BaseException as exc:
        done.set_exception(exc)
    else:
        done.set_result(None)


__all__ = ["HubService"]
