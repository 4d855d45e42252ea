"""One connector kind → one adapter factory: the single place that decides how the hub talks to a destination.

``build_adapter(cfg, context)`` picks the factory by ``factory_key(cfg)`` (a national portal connector with a
partner profile gets that profile's adapter, ``adapters.dvcqg``); ``build_adapters(destinations, context)``
builds one adapter per destination. What an adapter needs from the rest of the hub (such as the payment
adapter's hook that records initiated references, ``hub.store.flow_records``) comes in through ``AdapterContext``,
built by the composition root (``hub.runtime.adapters_for``): adapters never import the hub's API, console or
flows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from adapters.base import AcceptedSteps, Adapter, DeliveryReceipt, OutboundRequest, TransientDeliveryError
from adapters.http import HttpAdapter
from hub.errors import MissingCredentialsError
from hub.security.credentials import Credentials, redact_url

if TYPE_CHECKING:
    from adapters.notification import NotificationHooks
    from adapters.postal import PostalOrders

ENVELOPE = "envelope"  # the default: POST the hub-signed envelope
#: Kinds whose factory is chosen whatever the transport (their transport may be json too).
PARTNER_KINDS = frozenset({"population_db", "payment", "postal", "notification"})


class DestinationConfig(Protocol):
    """What a factory reads of a destination (``hub.exchange.routing.DestinationConfig`` has it). A protocol, not
    an import: the exchange core imports adapters, so adapters may not import it back."""

    @property
    def kind(self) -> str: ...
    @property
    def transport(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def credentials(self) -> Credentials | None: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def profile(self) -> str | None: ...
    @property
    def profile_values(self) -> Mapping[str, str]: ...
    @property
    def templates(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class AdapterContext:
    """What factories may need from the hub: callbacks, passed in so adapters stay transport only.

    ``on_payment_initiated(destination, request, message_id, answer, details)`` records a payment reference the hub
    now expects a ``CONFIRM`` for (``details``: the profile, the INIT's time, the partner's reference, the payment
    URL); ``integration_code`` is the hub's own code, for a partner that asks who integrates (the population DB does
    not: its ``MaTichHop`` is the profile's ``integration_code``, "037", FE:378); ``postal_orders`` assigns VNPost
    ItemCodes and records the orders placed (``hub.store.postal_orders.OrderBook``; ``None``: in this process only);
    ``notifications`` what a notification connector reads and writes of the dossier (its latest ``dossier.sync``,
    its timeline: ``adapters.notification``); ``delivery_steps`` the calls of a delivery already accepted."""

    on_payment_initiated: Callable[..., None] | None = None
    #: Why a refund for a dossier may not be sent (resolved: Tiền Giang Điều 17.4), ``None`` when it may.
    refund_guard: Callable[[str], str | None] | None = None
    integration_code: str | None = None
    postal_orders: PostalOrders | None = None
    notifications: NotificationHooks | None = None
    #: The calls of a delivery a partner already accepted (``hub.store.delivery_steps``): the national portal's
    #: supplement step sends its progress record once, however often the delivery is tried.
    delivery_steps: AcceptedSteps | None = None


AdapterFactory = Callable[[DestinationConfig, AdapterContext], Adapter]


class UnusableAdapter(Adapter):
    """A destination that cannot be called as configured: every delivery fails as transient with the reason, so
    its messages stay queued (and say why) rather than stopping the worker."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        raise TransientDeliveryError(self.reason)


def _credentials(cfg: DestinationConfig, what: str, why: str = "") -> Credentials:
    if cfg.credentials is None:
        where = redact_url(cfg.endpoint)
        raise MissingCredentialsError(f"the {what} endpoint {where} has no endpoint.credentials{why}")
    return cfg.credentials


def _national_portal(cfg: DestinationConfig, context: AdapterContext) -> Adapter:
    if cfg.profile is not None and cfg.kind == "national_portal":
        return _dvcqg(cfg, context.delivery_steps)
    from adapters.national_portal import NationalPortalAdapter

    creds = _credentials(cfg, "national portal", " to log in")
    return NationalPortalAdapter(
        cfg.endpoint,
        username=creds.username,
        password=creds.password.get_secret_value(),
        madonvi=creds.madonvi,
        timeout_s=cfg.timeout_s,
        max_connections=cfg.concurrency,
    )


def _dvcqg(cfg: DestinationConfig, steps: AcceptedSteps | None) -> Adapter:
    """The real portal as the connector's profile says: ``dvcqg/opencps`` (session API) or ``dvcqg/proxy``;
    ``steps`` keeps the calls of a supplement step the portal accepted (``None``: a retry sends both again)."""
    from adapters.dvcqg import DvcqgOpenCpsAdapter, DvcqgProxyAdapter
    from mappings import profiles

    assert cfg.profile is not None
    try:
        settings = profiles.resolve(profiles.get_profile(cfg.profile), cfg.profile_values)
        if settings.profile.name == "dvcqg/proxy":
            return DvcqgProxyAdapter(cfg.endpoint, settings, timeout_s=cfg.timeout_s, max_connections=cfg.concurrency,
                                     steps=steps)  # fmt: skip
        creds = _credentials(cfg, "national portal", " to log in")
        return DvcqgOpenCpsAdapter(
            cfg.endpoint,
            settings,
            username=creds.username,
            password=creds.password.get_secret_value(),
            timeout_s=cfg.timeout_s,
            max_connections=cfg.concurrency,
            steps=steps,
        )
    except (profiles.UnknownProfileError, profiles.ProfileValueError) as exc:
        return UnusableAdapter(f"the national portal endpoint {redact_url(cfg.endpoint)} cannot be called: {exc}")


def _population_db(cfg: DestinationConfig, context: AdapterContext) -> Adapter:
    """The population DB as the connector's profile says: ``c06/lgsp`` (through the LGSP, the sourced route) or
    ``c06/direct`` (SOAP with zeep; also a connector without a profile, with the sourced defaults)."""
    from adapters.population_db import DEFAULT_PROFILE, population_db_adapter
    from mappings import profiles

    try:
        settings = profiles.resolve(profiles.get_profile(cfg.profile or DEFAULT_PROFILE), cfg.profile_values)
        return population_db_adapter(
            cfg.endpoint, settings, credentials=cfg.credentials, timeout_s=cfg.timeout_s,
            max_connections=cfg.concurrency,
        )  # fmt: skip
    except (profiles.UnknownProfileError, profiles.ProfileValueError, ValueError) as exc:
        return UnusableAdapter(f"the population DB endpoint {redact_url(cfg.endpoint)} cannot be called: {exc}")


def _payment(cfg: DestinationConfig, context: AdapterContext) -> Adapter:
    """The payment platform as the connector's profile says: ``paygov/1.0.6`` (the Payment Platform's LoaiBanTin
    messages; also a connector without a profile, every kind to ``endpoint.url``) or ``paygov/lgsp`` (PayGov via the
    provincial LGSP)."""
    from adapters.payment import PaymentAdapter
    from mappings import profiles

    creds = _credentials(cfg, "payment")
    settings: profiles.ProfileSettings | None = None
    try:
        if cfg.profile is not None:
            settings = profiles.resolve(profiles.get_profile(cfg.profile), cfg.profile_values)
    except (profiles.UnknownProfileError, profiles.ProfileValueError) as exc:
        return UnusableAdapter(f"the payment endpoint {redact_url(cfg.endpoint)} cannot be called: {exc}")
    if settings is not None and settings.profile.name == "paygov/lgsp":
        from adapters.paygov_lgsp import PayGovLgspAdapter

        return PayGovLgspAdapter(
            cfg.endpoint,
            settings,
            partner_code=creds.username,
            secret_key=creds.password.get_secret_value(),
            token=creds.secret("token"),
            lgsp_access_token=creds.secret("lgsp_access_token"),
            timeout_s=cfg.timeout_s,
            max_connections=cfg.concurrency,
            on_initiated=context.on_payment_initiated,
        )
    return PaymentAdapter(
        cfg.endpoint,
        partner_code=creds.username,
        secret=creds.password.get_secret_value(),
        settings=settings,
        token=creds.secret("token"),
        timeout_s=cfg.timeout_s,
        max_connections=cfg.concurrency,
        on_initiated=context.on_payment_initiated,
        refund_guard=context.refund_guard,
        profile=None if settings is None else settings.profile.name,
    )


def _postal(cfg: DestinationConfig, context: AdapterContext) -> Adapter:
    """VNPost as the connector's profile says (``vnpost/ngsp``); a postal connector without a profile cannot be
    called: the hub's former postal format was never VNPost's (PARTNER-FORMATS §4)."""
    from adapters.postal import PostalAdapter
    from mappings import profiles

    if cfg.profile is None:
        where = redact_url(cfg.endpoint)
        return UnusableAdapter(f"the postal endpoint {where} has no profile: set profile: vnpost/ngsp")
    creds = _credentials(cfg, "postal", " (VNPost's consumer key and secret)")
    try:
        settings = profiles.resolve(profiles.get_profile(cfg.profile), cfg.profile_values)
        return PostalAdapter(
            cfg.endpoint,
            settings,
            consumer_key=creds.username,
            secret=creds.password.get_secret_value(),
            orders=context.postal_orders,
            timeout_s=cfg.timeout_s,
            max_connections=cfg.concurrency,
        )
    except (profiles.UnknownProfileError, profiles.ProfileValueError) as exc:
        return UnusableAdapter(f"the postal endpoint {redact_url(cfg.endpoint)} cannot be called: {exc}")


def _provincial(cfg: DestinationConfig, context: AdapterContext) -> Adapter:
    from adapters.provincial import ProvincialAdapter

    return ProvincialAdapter(cfg.endpoint, timeout_s=cfg.timeout_s, max_connections=cfg.concurrency)


def _notification(cfg: DestinationConfig, context: AdapterContext) -> Adapter:
    """Email over SMTP or SMS through an HTTP gateway, as the connector's ``notification/*`` profile says."""
    from adapters.notification import notification_adapter
    from mappings import profiles

    try:
        if cfg.profile is None:
            raise ValueError("a notification connector needs a profile (notification/email-smtp, …/sms-http)")
        settings = profiles.resolve(profiles.get_profile(cfg.profile), cfg.profile_values)
        creds = cfg.credentials
        return notification_adapter(
            settings.profile.name, settings, cfg.endpoint, templates=cfg.templates, hooks=context.notifications,
            username=creds.username if creds else None, password=creds.password.get_secret_value() if creds else None,
            timeout_s=cfg.timeout_s, max_connections=cfg.concurrency,
        )  # fmt: skip
    except (ValueError, KeyError) as exc:  # MappingError (unknown profile, value, template) is a ValueError too
        return UnusableAdapter(f"the notification endpoint {redact_url(cfg.endpoint)} cannot be used: {exc}")


def _envelope(cfg: DestinationConfig, context: AdapterContext) -> Adapter:
    return HttpAdapter(cfg.endpoint, timeout_s=cfg.timeout_s, max_connections=cfg.concurrency)


FACTORIES: Mapping[str, AdapterFactory] = {
    "national_portal": _national_portal,
    "provincial": _provincial,
    "ministry": _envelope,
    "population_db": _population_db,
    "payment": _payment,
    "postal": _postal,
    "notification": _notification,
    ENVELOPE: _envelope,
}


def factory_key(cfg: DestinationConfig) -> str:
    """The ``FACTORIES`` key for a destination: its kind; any other kind with the ``json`` transport speaks the
    national portal's JSON; anything else gets the signed-envelope POST."""
    if cfg.kind in PARTNER_KINDS:
        return cfg.kind
    if cfg.transport == "json":
        return "national_portal"
    return cfg.kind if cfg.kind in FACTORIES else ENVELOPE


def build_adapter(cfg: DestinationConfig, context: AdapterContext | None = None) -> Adapter:
    """The adapter for one destination (an ``UnusableAdapter`` saying why when it lacks its credentials)."""
    try:
        return FACTORIES[factory_key(cfg)](cfg, context or AdapterContext())
    except MissingCredentialsError as exc:
        return UnusableAdapter(str(exc))


def build_adapters(
    destinations: Mapping[str, DestinationConfig], context: AdapterContext | None = None
) -> dict[str, Adapter]:
    """One adapter per destination (``RoutingTable.destinations``: code → its configuration)."""
    return {code: build_adapter(cfg, context) for code, cfg in destinations.items()}
