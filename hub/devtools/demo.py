"""``hub demo``: the hub and its partners on loopback, on the embedded default, running the partner flows end to end.

``DemoHub`` sets everything up in a fresh data folder (``var/demo`` by default): keys from a demo CA for the hub,
the province and the ministry (``hub.security.keys``); the partner simulators
(``hub.devtools.simulators.start_all``); the store and
the connector registry with the demo connectors; the API (uvicorn in a thread, on ``127.0.0.1:8000``) and a
worker (in a thread; short retry delays). Every port is checked first: a busy one is a ``PortsInUseError`` naming
each, before anything starts. ``run_flows`` then runs each flow of ``FLOWS`` in turn, every step with
a timeout, and ``partner_table`` shows what each partner received.

A flow is a function ``(demo, step) -> FlowResult``: it drives the partners through the hub's real interfaces
(signed envelopes over HTTP and SOAP, the REST API with the operator key) and checks what the partners received.
``step(text)`` reports progress. ``FLOWS``: F1 online dossier → portal; F2 citizen lookup (population DB, SOAP,
answered synchronously, audited); F3 fee payment (INIT, the payer pays, the sourced CONFIRM, GET_BILL e-receipt → the
province and the portal; forged and repeated CONFIRMs); F4 postal pickup order and its tracking events; F5 land
registration steps (VBDLIS's per-step JSON); F6 a partner down or refusing; F7 the life of a dossier (citizen
notifications by email and SMS, a supplement with a new due date to the portal, a signed result checked, returned)
and a result signed by the wrong key held with its rule.

The citizen notification connectors (email through the demo's SMTP server, SMS through the gateway simulator) are
registered in every run, as a deployment registers them for every dossier: each flow's dossier update whose status
the applicant is told of (``DemoHub.notified``) is routed to them too, and every applicant is notified.

Every message a flow gets accepted is tracked with what should become of it (delivered, or not routed at all
for a stale update); ``lost`` counts those that ended otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from hub.config import Settings
from hub.devtools.mail_server import MailServer, ReceivedMail
from hub.devtools.pdf_documents import DemoPdfKeys, demo_pdf_keys
from hub.devtools.simulators import DEFAULT_PORTS, start_all, stop_all
from hub.devtools.simulators.payment import DEFAULT_PARTNERS as PAYMENT_SECRETS
from hub.devtools.simulators.population_db import demo_credentials as population_db_credentials
from hub.devtools.simulators.postal import DEFAULT_CONSUMERS as POSTAL_CONSUMERS
from hub.devtools.simulators.sms_gateway import DEFAULT_TOKEN as SMS_TOKEN
from hub.errors import ConfigError
from hub.packets.citizen import CitizenLookup, CitizenRecord
from hub.packets.dossier import DossierStatusUpdate, DossierSync, Result, Supplement
from hub.packets.dossier import Step as ProcessingStep
from hub.packets.payment import PaymentRequest
from hub.packets.postal import PostalOrder
from hub.security import keys
from mappings.national_portal import to_portal_time
from mappings.notification import EVENT_OF_STATUS, LOCAL_TIME

log = logging.getLogger(__name__)
PacketT = TypeVar("PacketT", bound=BaseModel)

HUB_CODE = "000.00.00.H00"
STEP_TIMEOUT_S = 20.0  # no step of a flow waits longer than this
PORTAL_USER, PORTAL_PASSWORD = "lienthong", "lienthong-demo"  # the portal simulator's demo account
PORTAL_PROFILE = "dvcqg/opencps@1"  # the portal as VietOpenCPS calls it (mappings/profiles/dvcqg/opencps.yaml)
#: DonViXuLy when a dossier.sync names no unit: the demo catalogue's name of the province's unit (invented)
PORTAL_UNIT_NAME = "Ủy ban nhân dân tỉnh (demo)"
POPULATION_PROFILE = "c06/lgsp@1"  # the population DB through the LGSP (mappings/profiles/c06/lgsp.yaml)
PAYMENT_PARTNER = "LIENTHONG"  # the hub's MaDoiTac at the payment simulator (its secret: DEFAULT_PARTNERS)
PAYMENT_PROFILE = "paygov/1.0.6@1"  # the Payment Platform's LoaiBanTin messages (mappings/profiles/paygov/1.0.6.yaml)
POSTAL_CLIENT, POSTAL_CUSTOMER = "lienthong", "KH-LIENTHONG-01"  # VNPost consumer key at the simulator; CustomerCode
POSTAL_PROFILE = "vnpost/ngsp@1"  # VNPost through its NGSP SDK (mappings/profiles/vnpost/ngsp.yaml)
#: The waybill codes "VNPost pre-issued" to the demo province (invented; profile value item_codes, TH-VH:64-71)
POSTAL_ITEM_CODES = [f"EL9{n:08d}VN" for n in range(1, 41)]
DEMO_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)  # F6's 3 s outage ends before the 4th attempt
NOTIFY_FROM = "Bộ phận Một cửa tỉnh (demo) <motcua@lienthong.test>"  # the notification emails' sender (invented)

Step = Callable[[str], None]


class FlowFailed(Exception):
    """A step of a flow did not end as expected (the message says which and why)."""


class PortsInUseError(ConfigError):
    """Ports the demo must listen on are taken (another demo, ``hub simulate``, any server): found before anything
    starts or is deleted, so the caller can name each port and the option that moves it."""

    def __init__(self, busy: dict[str, int]) -> None:
        self.busy = busy  # what would listen there ("api" or a simulator's kind) -> port
        super().__init__("ports in use: " + ", ".join(f"{port} ({name})" for name, port in busy.items()))


def busy_ports(host: str, ports: dict[str, int]) -> dict[str, int]:
    """The entries of ``ports`` (name -> port; 0 = any free port) that cannot be bound on ``host`` now."""
    busy = {}
    for name, port in ports.items():
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # as uvicorn and the simulators bind: a port left in TIME_WAIT by the last run is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                busy[name] = port
    return busy


@dataclass(frozen=True)
class DemoCodes:
    """The agency codes of the demo's systems (each is a connector; each destination is a queue)."""

    province: str = "000.00.00.H12"
    portal: str = "000.00.00.G01"
    ministry: str = "000.00.00.G10"
    population_db: str = "000.00.00.G03"
    postal: str = "000.00.00.G04"
    payment: str = "000.00.00.G05"
    vbdlis: str = "000.00.00.G11"  # the land registration software speaking VBDLIS's JSON (it only sends)
    notify_email: str = "000.00.00.G21"  # citizen notifications by email
    notify_sms: str = "000.00.00.G22"  # citizen notifications by SMS
    hub: str = HUB_CODE

    @classmethod
    def random(cls) -> DemoCodes:
        """Codes no other run uses (tests on a shared RabbitMQ)."""
        a, b = random.randint(100, 999), random.randint(10, 99)  # noqa: S311 - not a secret
        return cls(province=f"{a}.{b}.00.H12", portal=f"{a}.{b}.00.G01", ministry=f"{a}.{b}.00.G10",
                   population_db=f"{a}.{b}.00.G03", postal=f"{a}.{b}.00.G04", payment=f"{a}.{b}.00.G05",
                   vbdlis=f"{a}.{b}.00.G11", notify_email=f"{a}.{b}.00.G21",
                   notify_sms=f"{a}.{b}.00.G22")  # fmt: skip

    @property
    def destinations(self) -> list[str]:
        """The destinations of a dossier.status update."""
        return [self.province, self.portal]

    @property
    def notifiers(self) -> list[str]:
        """The citizen notification connectors (email, SMS)."""
        return [self.notify_email, self.notify_sms]

    @property
    def queues(self) -> list[str]:
        """Every destination of the demo (one queue each)."""
        return [self.province, self.portal, self.population_db, self.postal, self.payment, *self.notifiers]


@dataclass
class DemoOptions:
    data_dir: Path = Path("var/demo")
    host: str = "127.0.0.1"
    port: int = 8000
    broker_url: str = "embedded"
    database_url: str | None = None  # default: a SQLite file in data_dir
    simulator_ports: dict[str, int] | None = None  # default: DEFAULT_PORTS; 0 = any free port
    retry_delays_s: tuple[float, ...] = DEMO_RETRY_DELAYS_S
    codes: DemoCodes = field(default_factory=DemoCodes)
    fresh: bool = True  # start from an empty data folder
    delete_queues: bool = False  # on close, delete the destinations' queues (tests on a shared RabbitMQ)
    #: register the citizen notification connectors (``DemoHub.notification_specs``: email to ``demo.mail``, SMS to
    #: ``demo.sms``), as a deployment does: every applicant is told of the updates Điều 12 names (F7 needs them)
    notifications: bool = True


@dataclass
class FlowResult:
    name: str
    title: str
    ok: bool
    detail: str
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else f"failed: {self.detail}"


@dataclass(frozen=True)
class Flow:
    name: str
    title: str
    run: Callable[[DemoHub, Step], str]  # returns a one-line summary; raises FlowFailed


# ---------------------------------------------------------------------------------------------- the running hub


def _simulator(name: str) -> Any:
    """A ``DemoHub`` attribute naming one of its running simulators (``demo.portal``), for the flows to read."""
    return property(lambda demo: demo.sims[name])


class DemoHub:
    """Keys, simulators, store and registry, API and worker for the demo; ``close()`` stops everything."""

    def __init__(self, options: DemoOptions | None = None) -> None:
        self.options = options or DemoOptions()
        self.codes = self.options.codes
        self.sims: dict[str, Any] = {}
        self.api_keys: dict[str, str] = {}
        self.admin_key = "adm_" + secrets.token_urlsafe(18)
        self.operator_key = "opr_" + secrets.token_urlsafe(18)
        self.expect: dict[str, str] = {}  # message id -> what should become of it: delivered | accepted (not routed)
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._worker: Any = None
        self._worker_runtime: Any = None  # the demo's own Runtime: it registers the connectors, then runs the worker
        self._log_handler: logging.Handler | None = None
        self._sequence = random.randint(1000, 8000)  # noqa: S311 - dossier numbers, not secrets
        self.http: httpx.Client | None = None
        self.dead_letter_id: int | None = None  # F6's dead letter (shown to the operator afterwards)
        self.held_result_ids: list[int] = []  # F7's held result (its dead letters, one per destination), replayed
        self.mail: MailServer | None = None  # the SMTP server notification emails reach (hub.devtools.mail_server)
        self.pdf_keys: DemoPdfKeys | None = None  # who signs result PDFs: the ministry's agency key, and another

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}"

    portal = _simulator("national_portal")
    province = _simulator("provincial")
    ministry = _simulator("ministry")
    vbdlis = _simulator("ministry_vbdlis")  # the land registration software speaking VBDLIS's JSON
    population_db = _simulator("population_db")
    payment = _simulator("payment")
    postal = _simulator("postal")
    sms = _simulator("sms_gateway")  # the SMS gateway notification SMS reach

    def __enter__(self) -> DemoHub:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, step: Step | None = None) -> None:
        step = step or (lambda _: None)
        o = self.options
        sim_ports = {k: (DEFAULT_PORTS if o.simulator_ports is None else o.simulator_ports).get(k, 0)
                     for k in DEFAULT_PORTS}  # fmt: skip
        busy = busy_ports(o.host, {"api": o.port}) | busy_ports("127.0.0.1", sim_ports)  # simulators: loopback
        if busy:  # before the data folder is wiped: it may be the running demo's
            raise PortsInUseError(busy)
        data = o.data_dir
        if o.fresh and data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True, exist_ok=True)
        self._log_to(data / "hub.log")
        key_dir = data / "keys"
        self.keys = {
            "hub": keys.issue_key("hub", key_dir, algorithm="ec", code=self.codes.hub),
            "province": keys.issue_key("province", key_dir, code=self.codes.province),
            "ministry": keys.issue_key("ministry", key_dir, algorithm="ec", code=self.codes.ministry),
        }
        step(f"keys from the demo CA in {key_dir}: hub (ECDSA P-256), province (RSA-2048), ministry (ECDSA P-256)")
        self.pdf_keys = demo_pdf_keys(key_dir, agency_code=self.codes.ministry, intermediary_code=self.codes.payment)
        step("PDF signers from the demo CA: competent-agency (registered as the ministry's result signer), "
             "payment-intermediary (registered as the payment connector's receipt signer), other-signer (registered "
             "for nothing)")  # fmt: skip
        self.settings = Settings(
            broker_url=o.broker_url,
            database_url=o.database_url or f"sqlite:///{(data / 'hub.db').resolve()}",
            data_dir=data,
            hub_code=self.codes.hub,
            key_file=None,
            cert_file=None,
            trust_dir=None,
            routes_file=None,
            api_host=o.host,
            api_port=o.port,
            admin_api_key=self.admin_key,
            operator_api_key=self.operator_key,
            admin_name="demo-admin",
            operator_name="demo-operator",
            relay_interval_s=1.0,
            registry_refresh_s=1.0,
            log_format="console",
        )
        self.sims = start_all(sim_ports, trust=key_dir / keys.CA_CERT_FILE)
        self.payment.pdf_keys = self.pdf_keys  # the platform signs its e-receipts with the intermediary's key
        self.mail = MailServer(sim_ports["mail"]).start()
        self.province.code, self.ministry.code = self.codes.province, self.codes.ministry
        self.province.hub_code = self.ministry.hub_code = self.codes.hub
        step("simulators: " + ", ".join(f"{k} {s.base_url}" for k, s in self.sims.items()) + f", mail {self.mail.url}")
        self._register()
        step(f"connectors registered: province {self.codes.province}, national portal {self.codes.portal} "
             f"({PORTAL_PROFILE}, dstcode {self.portal.dstcode}), ministry {self.codes.ministry} "
             f"(mapping ministry-steps), VBDLIS {self.codes.vbdlis} (ministry/vbdlis-json; its API key is the "
             f"simulator's security code), population DB {self.codes.population_db} ({POPULATION_PROFILE}: LGSP "
             f"token, SOAP body), "
             f"payment {self.codes.payment} ({PAYMENT_PROFILE}), postal {self.codes.postal} "
             f"({POSTAL_PROFILE})"
             + (f", citizen notifications {self.codes.notify_email} (email over SMTP) and {self.codes.notify_sms} "
                "(SMS gateway)" if o.notifications else ""))  # fmt: skip
        self._sync_catalogue(step)
        self._start_api()
        step(f"API on {self.base_url} (store {self.settings.database_url}, broker {o.broker_url})")
        self._start_worker()
        step("worker delivering (retry delays " + ", ".join(f"{d:g}s" for d in o.retry_delays_s) + ")")
        from hub.security.signing import Signer

        province_signer = Signer.from_files(self.keys["province"].key_path, self.keys["province"].cert_path)
        ministry_signer = Signer.from_files(self.keys["ministry"].key_path, self.keys["ministry"].cert_path)
        self.province.signer, self.province.hub_url = province_signer, self.base_url
        self.province.api_key = self.api_keys[self.codes.province]
        self.ministry.configure(
            signer=ministry_signer, hub_url=self.base_url, api_key=self.api_keys[self.codes.ministry]
        )
        self.payment.callback_url = f"{self.base_url}/api/v1/callbacks/payment/{self.codes.payment}"
        self.vbdlis.configure(hub_url=self.base_url, security_code=self.api_keys[self.codes.vbdlis])

    def _log_to(self, path: Path) -> None:
        """The hub's own logs go to a file: the terminal shows the demo."""
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        self._log_handler = handler

    def portal_profile_values(self) -> dict[str, str]:
        """The portal connector's ``profile_values`` (profile ``dvcqg/opencps``): what the portal simulator was
        started with — the values a real deployment writes in its connector YAML (none is sourced publicly)."""
        return {
            "dstcode": self.portal.dstcode,
            "madonvi": self.codes.province,
            "auth_endpoint": self.portal.auth_endpoint,
            "integration_endpoint": self.portal.integration_endpoint,
            "share_endpoint": self.portal.share_endpoint,
            "unit_name": PORTAL_UNIT_NAME,
        }

    def notification_specs(self) -> list[dict[str, Any]]:
        """The citizen notification connectors (Đắk Nông Điều 12): email through the demo's SMTP server (a trusted
        local relay: no STARTTLS) and SMS through the gateway simulator (its bearer token as the password)."""
        assert self.mail is not None, "start() first: the connectors point at the running mail server"
        o, c = self.options, self.codes
        retry = {"delays_s": list(o.retry_delays_s), "jitter": 0.1}
        updates = ["dossier.sync", "dossier.status"]
        return [
            {"code": c.notify_email, "name": "Citizen notifications by email (demo)", "kind": "notification",
             "receives": updates, "endpoint": {"url": self.mail.url, "transport": "smtp"},
             "profile": "notification/email-smtp",
             "profile_values": {"from_address": NOTIFY_FROM, "starttls": "none"}, "retry": retry, "timeout_s": 5},
            {"code": c.notify_sms, "name": "Citizen notifications by SMS (demo)", "kind": "notification",
             "receives": updates,
             "endpoint": {"url": self.sms.url, "transport": "json",
                          "credentials": {"username": "lienthong", "password": SMS_TOKEN}},
             "profile": "notification/sms-http", "profile_values": {"sender_id": "MOTCUA"},
             "retry": retry, "timeout_s": 5},
        ]  # fmt: skip

    def _register(self) -> None:
        from hub.registry.spec import parse_spec
        from hub.runtime import Runtime

        o, c = self.options, self.codes
        assert self.pdf_keys is not None, "the result signer's key is issued before the connectors are registered"
        retry = {"delays_s": list(o.retry_delays_s), "jitter": 0.1}
        circuit = {"failures": 20, "cooldown_s": 1.0}
        pem = {name: issued.cert_path.read_text() for name, issued in self.keys.items()}
        specs: list[dict[str, Any]] = [
            {"code": c.province, "name": "Provincial one-stop system (demo)", "kind": "provincial",
             "sends": ["dossier.sync", "citizen.lookup", "payment.request", "postal.order"],
             "receives": ["dossier.status", "payment.receipt", "postal.status"],
             "endpoint": {"url": self.province.url}, "certificates": [pem["province"]],
             "retry": retry, "circuit": circuit, "timeout_s": 5},
            {"code": c.portal, "name": "National public service portal (demo)", "kind": "national_portal",
             "receives": ["dossier.sync", "dossier.status"],
             "endpoint": {"url": self.portal.adapter_url, "transport": "json",
                          "credentials": {"username": PORTAL_USER, "password": PORTAL_PASSWORD}},
             "profile": PORTAL_PROFILE, "profile_values": self.portal_profile_values(),
             "retry": retry, "circuit": circuit, "timeout_s": 5, "concurrency": 1},
            # its results must carry the competent agency's signature (Quảng Nam Điều 16.3): checked before forwarding,
            # fetched only from its own document host — named exactly, as it is on loopback (adapters.link_hosts)
            {"code": c.ministry, "name": "Ministry software, XML steps (demo)", "kind": "ministry",
             "sends": ["dossier.status"], "mapping": {"dossier.status": "ministry-steps"},
             "handles": [c.province], "certificates": [pem["ministry"]],
             "result_signers": [self.pdf_keys.agency.cert_pem],
             "result_hosts": [urlsplit(self.ministry.base_url).netloc]},
            # VBDLIS posts unsigned per-step JSON; its security code is this connector's API key (PARTNER-FORMATS §5)
            {"code": c.vbdlis, "name": "Land registration software VBDLIS (demo)", "kind": "ministry",
             "sends": ["dossier.status"], "handles": [c.province],
             "profile": "ministry/vbdlis-json", "profile_values": {"api_versions": self.vbdlis.version}},
            # the population DB through the provincial LGSP, as the sources reach it (PARTNER-FORMATS §2)
            {"code": c.population_db, "name": "National population database (demo)", "kind": "population_db",
             "receives": ["citizen.lookup"],
             "endpoint": {"url": self.population_db.adapter_url, "transport": "soap",
                          "credentials": population_db_credentials()},
             "profile": POPULATION_PROFILE, "profile_values": self.population_db.profile_values(), "timeout_s": 5},
            {"code": c.payment, "name": "Payment platform (demo)", "kind": "payment",
             "receives": ["payment.request"],
             "endpoint": {"url": self.payment.url, "transport": "json",
                          "credentials": {"username": PAYMENT_PARTNER, "password": PAYMENT_SECRETS[PAYMENT_PARTNER]}},
             "profile": PAYMENT_PROFILE, "profile_values": self.payment.profile_values(),
             "certificates": [self.payment.bank_cert_pem],
             # the receipt rule (Quảng Nam Điều 14.3): only the intermediary's certificate signs its e-receipts
             "receipt_signers": [self.pdf_keys.intermediary.cert_pem],
             "retry": retry, "circuit": circuit, "timeout_s": 5},
            # VNPost (PARTNER-FORMATS §4): consumer key and secret; the simulator's paths, the demo's CustomerCode and
            # pre-issued waybill codes are the profile values a deployment writes
            {"code": c.postal, "name": "Postal service VNPost (demo)", "kind": "postal", "receives": ["postal.order"],
             "endpoint": {"url": self.postal.url, "transport": "json",
                          "credentials": {"username": POSTAL_CLIENT, "password": POSTAL_CONSUMERS[POSTAL_CLIENT]}},
             "profile": POSTAL_PROFILE,
             "profile_values": {**self.postal.profile_values, "customer_code": POSTAL_CUSTOMER,
                                "item_codes": ",".join(POSTAL_ITEM_CODES)},
             "retry": retry, "circuit": circuit, "timeout_s": 5},
        ]  # fmt: skip
        if o.notifications:
            specs.extend(self.notification_specs())
        self._worker_runtime = Runtime.open(self.settings)
        registry = self._worker_runtime.registry()
        for data in specs:
            _, key = registry.add(parse_spec(data), actor="hub demo")
            if key is None:  # already registered (a data folder kept with fresh=False): a new key
                key = registry.rotate_key(data["code"], actor="hub demo")
            self.api_keys[data["code"]] = key

    def _sync_catalogue(self, step: Step) -> None:
        """``hub catalogue sync`` against the portal simulator (through the portal connector): intake then warns
        about procedures the catalogue lacks, and the worker names portal records from it."""
        from hub.flows.catalogue import sync_catalogue

        runtime = self._worker_runtime
        runtime.refresh()
        synced = sync_catalogue(runtime.store, runtime.routing.destinations, connector=self.codes.portal,
                                actor="hub demo")  # fmt: skip
        step(f"procedure catalogue synced from the portal: {synced.procedures} procedures, {synced.units} units, "
             f"{synced.fields} fields")  # fmt: skip

    def _start_api(self) -> None:
        import uvicorn

        from hub.api import create_app

        config = uvicorn.Config(
            create_app(self.settings), host=self.options.host, port=self.options.port,
            log_config=None, log_level="warning", access_log=False, lifespan="on",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        thread = threading.Thread(target=self._server.run, name="demo-api", daemon=True)
        thread.start()
        self._threads.append(thread)
        self.http = http = httpx.Client(base_url=self.base_url, timeout=10)
        wait_for(lambda: self._ready(thread, http), 30, f"the API to answer on {self.base_url}/readyz")

    def _ready(self, thread: threading.Thread, http: httpx.Client) -> bool:
        if not thread.is_alive():
            log_file = self.options.data_dir / "hub.log"
            raise FlowFailed(f"the API did not start on {self.base_url} (port in use? see {log_file})")
        try:
            return http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _start_worker(self) -> None:
        from hub.exchange.pipeline import Relay
        from hub.exchange.portal_refresh import DossierRecords
        from hub.exchange.worker import OutboundBuilder, Worker
        from hub.store.catalogue import CachedCatalogue

        runtime = self._worker_runtime
        runtime.refresh()  # the routing of the connectors just registered
        # built by the runtime: the payment adapter records each INIT's reference in the demo's store
        adapters = runtime.adapters()
        self._worker = Worker(
            runtime.store, runtime.broker, runtime.routing,
            OutboundBuilder(runtime.signer(), self.settings.hub_code, CachedCatalogue(runtime.store.catalogue_names),
                            dossiers=DossierRecords(runtime.store)),
            adapters,
            prefetch=16, relay=Relay(runtime.store, runtime.broker, grace_s=2.0, every_s=1.0),
        )  # fmt: skip
        thread = threading.Thread(target=self._worker.run, name="demo-worker", daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._worker_runtime is not None:
            if self.options.delete_queues:
                try:
                    self._worker_runtime.broker.delete(self.codes.queues)
                except Exception:  # best effort: the broker may be gone
                    log.warning("could not delete the demo's queues", exc_info=True)
            self._worker_runtime.close()
            self._worker_runtime = None
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.sims:
            stop_all(self.sims)
        if self.mail is not None:
            self.mail.stop()
            self.mail = None
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def wait_idle(self, timeout_s: float = 2.0) -> None:
        """Give the worker's buffered settlements a moment (tests that stop right after a flow)."""
        time.sleep(min(timeout_s, 0.2))

    # ------------------------------------------------------------ helpers for flows

    def dossier_code(self) -> str:
        """A new dossier code of the province: ``<agency code>-<YYMMDD>-<NNNN>`` (TT 01/2018 Điều 19)."""
        self._sequence += 1
        today = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).strftime("%y%m%d")
        return f"{self.codes.province}-{today}-{self._sequence % 10000:04d}"

    def api(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        assert self.http is not None
        return self.http.request(method, path, headers={"X-Api-Key": key or self.admin_key}, **kwargs)

    def trace(self, message_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/api/v1/messages/{message_id}")
        if response.status_code != 200:
            raise FlowFailed(f"no trace for message {message_id}: HTTP {response.status_code}")
        return response.json()

    def notified(self, status: int) -> list[str]:
        """The notification connectors a dossier update reporting ``status`` is routed to: both, when it is a moment
        the applicant is told of (Đắk Nông Điều 12.2.a; ``mappings.notification.EVENT_OF_STATUS``), else none."""
        return self.codes.notifiers if self.options.notifications and status in EVENT_OF_STATUS else []

    def to_portal(self, status: int) -> list[str]:
        """Where the province's ``dossier.sync`` reporting ``status`` goes: the portal, and the applicant's
        notifications when ``status`` is one they are told of."""
        return [self.codes.portal, *self.notified(status)]

    def track(self, message_id: str, expected: str = "delivered") -> None:
        self.expect[message_id] = expected

    def wait_status(self, message_id: str, status: str = "delivered", timeout_s: float = STEP_TIMEOUT_S) -> dict:
        """Wait until the message's status is ``status`` (fails early on an unexpected dead letter)."""
        seen: dict[str, Any] = {}

        def done() -> bool:
            seen.update(self.trace(message_id))
            if seen["status"] == "dead" and status != "dead":
                errors = "; ".join(d.get("last_error") or "" for d in seen["deliveries"])
                raise FlowFailed(f"message {message_id} was dead-lettered: {errors}")
            return seen["status"] == status

        wait_for(done, timeout_s, f"message {message_id} to be {status}")
        return seen

    def lost(self) -> int:
        """Tracked messages that did not end as intended (not delivered, or routed when they should not be)."""
        lost = 0
        for message_id, expected in self.expect.items():
            try:
                status = self.trace(message_id)["status"]
            except (FlowFailed, httpx.HTTPError):
                status = "unknown"
            if status != expected:
                lost += 1
        return lost


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise FlowFailed(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(every_s)


# ---------------------------------------------------------------------------------------------- packets


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_online_dossier(code: str, *, status: int = 1, submitted_at: dt.datetime | None = None,
                       received_at: dt.datetime | None = None):  # fmt: skip
    """A ``dossier.sync`` of a dossier submitted online (channel 2), based on the packet example."""
    from hub import packets

    base = _packet(DossierSync, packets.example("dossier.sync"))
    return base.model_copy(
        update={
            "dossier_code": code,
            "channel": 2,
            "status": status,
            "submitted_at": submitted_at or _now(),
            "received_at": received_at,
            # a received dossier has its appointment date for the result (NgayHenTra)
            "due_at": None if received_at is None else received_at + dt.timedelta(days=15),
            "finished_at": None,
            "returned_at": None,
            "results": [],
            "supplements": [],  # the example's supplement round is another dossier's story
            "documents": [d.model_copy(update={"url": d.url.replace(packets.examples.DOSSIER_CODE, code)})
                          for d in base.documents],
        }
    )  # fmt: skip


def _submit(demo: DemoHub, model, *, expect_to: list[str]) -> str:
    result = demo.province.submit(model)
    if result.status != 202:
        raise FlowFailed(f"the hub refused the province's {type(model).__name__}: HTTP {result.status} {result.body}")
    if sorted(result.body.get("destinations", [])) != sorted(expect_to):
        raise FlowFailed(f"routed to {result.body.get('destinations')}, expected {expect_to}")
    demo.track(result.message_id)
    return result.message_id


def _portal_calls(demo: DemoHub, code: str, service: str = "DongBoHoSoMC") -> list[dict[str, Any]]:
    calls = demo.portal.received()["calls"]
    return [c for c in calls if c["service"] == service and any(r.get("MaHoSo") == code for r in c["data"] or [])]


def _looked_up(demo: DemoHub, code: str) -> int:
    """How many times the hub asked the portal ``TraCuuHoSo`` for ``code``."""
    calls = demo.portal.received()["calls"]
    return sum(1 for c in calls if c["service"] == "TraCuuHoSo" and c["params"].get("mahoso") == code)


def _packet(kind: type[PacketT], packet: BaseModel) -> PacketT:
    """``packet`` as the model its type name promises (the packet registry hands out ``BaseModel``)."""
    _check(isinstance(packet, kind), f"expected a {kind.__name__}, got a {type(packet).__name__}")
    return cast(PacketT, packet)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise FlowFailed(message)


def _status_entries(demo: DemoHub, code: str) -> list[dict[str, Any]]:
    """The dossier's timeline without its notification entries (those record what the applicant was told)."""
    from adapters.notification import NOTIFIED, SKIPPED

    updates = demo.api("GET", f"/api/v1/dossiers/{code}").json()["updates"]
    return [u for u in updates if u["outcome"] not in (NOTIFIED, SKIPPED)]


# ---------------------------------------------------------------------------------------------- F1


def flow_f1(demo: DemoHub, step: Step) -> str:
    """F1: a new online dossier → the national portal (profile dvcqg/opencps: TraCuuHoSo, then DongBoHoSoMC insert),
    then its update (isUpdating "True"); a dossier the portal already had before the hub is found by TraCuuHoSo and
    updated; the portal's string ``error_code`` "0" is a delivery; the 8-working-hour intake rule."""
    code = demo.dossier_code()
    submitted = _now()
    first = _submit(demo, new_online_dossier(code, submitted_at=submitted), expect_to=demo.to_portal(1))
    step(f"province → hub: dossier.sync {code} status 1 (new, online) accepted as {first[:8]}…")
    demo.wait_status(first)
    record = demo.portal.received()["records"].get(code)
    _check(record is not None, f"the portal has no record of {code}")
    _check(str(record["TrangThaiHoSo"]) == "1", f"portal TrangThaiHoSo {record['TrangThaiHoSo']}, expected 1")
    calls = _portal_calls(demo, code)
    _check([(c["isUpdating"], c["error_code"]) for c in calls] == [("False", "0")], f"portal calls {calls}")
    _check(_looked_up(demo, code) == 1, f"no TraCuuHoSo for {code} before its insert")
    step(f"hub → portal: TraCuuHoSo (not there) → DongBoHoSoMC isUpdating=False → error_code \"0\"; "
         f"portal TrangThaiHoSo 1 ({record['MaHoSo']})")  # fmt: skip

    update = _submit(demo, new_online_dossier(code, status=2, submitted_at=submitted, received_at=_now()),
                     expect_to=demo.to_portal(2))  # fmt: skip
    demo.wait_status(update)
    record = demo.portal.received()["records"][code]
    calls = _portal_calls(demo, code)
    _check(str(record["TrangThaiHoSo"]) == "2", f"portal TrangThaiHoSo {record['TrangThaiHoSo']}, expected 2")
    _check(calls[-1]["isUpdating"] == "True" and calls[-1]["error_code"] == "0", f"last portal call {calls[-1]}")
    step('province → hub → portal: the update (status 2, received): TraCuuHoSo finds it → isUpdating=True → "0"')

    # A dossier the portal already holds (synced before the hub existed): TraCuuHoSo finds it, so the hub's
    # first DongBoHoSoMC for it is an update (OC-DV:2124-2137).
    known = demo.dossier_code()
    demo.portal.seed({"MaHoSo": known, "TrangThaiHoSo": "1"})
    again = _submit(demo, new_online_dossier(known, status=2, submitted_at=submitted, received_at=_now()),
                    expect_to=demo.to_portal(2))  # fmt: skip
    demo.wait_status(again)
    known_calls = [(c["isUpdating"], c["error_code"]) for c in _portal_calls(demo, known)]
    _check(known_calls == [("True", "0")], f"portal calls for {known}: {known_calls}")
    _check(_looked_up(demo, known) == 1, f"no TraCuuHoSo for {known}")
    step(f"{known} already on the portal (synced before the hub): TraCuuHoSo finds it → its first DongBoHoSoMC "
         "is isUpdating=True → \"0\"")  # fmt: skip

    # A procedure the synced catalogue does not list: accepted and delivered, with a warning naming the code.
    odd, unknown = demo.dossier_code(), "9.999999"
    model = new_online_dossier(odd, submitted_at=submitted).model_copy(update={"procedure_code": unknown})
    warned = demo.province.submit(model)
    warnings = [w for w in warned.body.get("warnings", []) if w.get("rule") == "procedure-unknown"]
    _check(warned.status == 202 and len(warnings) == 1 and unknown in warnings[0]["message"],
           f"a dossier naming procedure {unknown}: HTTP {warned.status} {warned.body}")  # fmt: skip
    demo.track(warned.message_id)
    demo.wait_status(warned.message_id)
    step(f"{odd} names procedure {unknown}, not in the catalogue: accepted with the warning "
         f"'{warnings[0]['message'][:60]}…', delivered")  # fmt: skip

    # The 8-working-hour rule: a dossier submitted online two weeks ago and still at status 1 is flagged.
    late = demo.dossier_code()
    stale_submit = submitted - dt.timedelta(days=14)
    late_id = _submit(demo, new_online_dossier(late, submitted_at=stale_submit), expect_to=demo.to_portal(1))
    demo.wait_status(late_id)
    answer = demo.api("GET", "/api/v1/deadlines", key=demo.operator_key)
    _check(answer.status_code == 200, f"GET /api/v1/deadlines: HTTP {answer.status_code} {answer.text[:200]}")
    overdue = {d["dossier_code"]: d for d in answer.json()["overdue"]}
    _check(late in overdue, f"{late} (status 1 since {stale_submit:%Y-%m-%d}) is not flagged overdue")
    _check(code not in overdue and known not in overdue, "a dossier already received (status 2) is flagged")
    timeline = _status_entries(demo, code)
    _check([(u["status"], u["outcome"]) for u in timeline] == [(1, "applied"), (2, "applied")],
           f"timeline of {code}: {timeline}")  # fmt: skip
    step(f"8-working-hour rule: {late} still at status 1 since {stale_submit:%Y-%m-%d} is flagged "
         f"({overdue[late]['overdue_working_hours']:.1f} working hours late) in GET /api/v1/deadlines")  # fmt: skip
    return f"{code} inserted then updated on the portal; {known} found by TraCuuHoSo, updated; {late} flagged overdue"


# ---------------------------------------------------------------------------------------------- F2


def _lookup_post(demo: DemoHub, data: bytes) -> httpx.Response:
    assert demo.http is not None
    headers = {"Content-Type": "application/xml", "X-Api-Key": demo.api_keys[demo.codes.province]}
    return demo.http.post("/api/v1/lookups", content=data, headers=headers)


def flow_f2(demo: DemoHub, step: Step) -> str:
    """F2: the province's signed citizen.lookup → the population DB through the provincial LGSP (profile c06/lgsp:
    token, then the SOAP body as application/xml) → a hub-signed citizen.record with the name parts, minimised to
    what a one-stop officer needs, answered synchronously; a lookup without a purpose is refused (Ninh Thuận Điều
    28.2.b); both are audited."""
    from lxml import etree

    from hub import packets
    from hub.devtools.simulators.population_db import POPULATION
    from hub.security.envelope import EnvelopeHeader
    from hub.security.signing import EnvelopeVerifier, TrustStore, sign_payload

    code = demo.dossier_code()
    citizen = POPULATION[0]  # a synthetic citizen of the simulator (no real people)
    born = dt.datetime.strptime(citizen.congdan["NgayThangNamSinh"]["NgayThangNam"], "%Y%m%d").date()
    lookup = _packet(CitizenLookup, packets.example("citizen.lookup")).model_copy(
        update={"dossier_code": code, "request_id": f"TC-{secrets.token_hex(6).upper()}",
                "full_name": citizen.full_name, "personal_id": citizen.congdan["SoDinhDanh"], "birth_date": born}
    )  # fmt: skip
    started = time.monotonic()
    answer = _lookup_post(demo, demo.province.envelope(lookup))
    elapsed = time.monotonic() - started
    _check(answer.status_code == 200, f"POST /api/v1/lookups: HTTP {answer.status_code} {answer.text[:200]}")
    _check(answer.headers.get("content-type", "").startswith("application/xml"), "the record is not application/xml")
    trust = TrustStore.from_path(demo.options.data_dir / "keys" / keys.CA_CERT_FILE)
    verified = EnvelopeVerifier(trust).verify(answer.content)
    header = verified.header
    _check(header.message_type == "citizen.record" and header.sender == demo.codes.hub
           and header.receiver == demo.codes.province, f"reply header {header}")  # fmt: skip
    record = _packet(CitizenRecord, packets.from_element("citizen.record", verified.payload))
    _check(record.result.value == "found" and record.citizen is not None, f"lookup result {record.result.value}")
    _check(record.request_id == lookup.request_id, f"record for request {record.request_id}, not {lookup.request_id}")
    person = record.citizen
    assert person is not None
    parts = citizen.congdan["HoVaTen"]
    _check((person.family_name, person.middle_name, person.given_name) == (parts["Ho"], parts["ChuDem"], parts["Ten"]),
           f"name parts {person.family_name!r} {person.middle_name!r} {person.given_name!r}")  # fmt: skip
    _check(person.household_head is not None and person.father is None and person.old_id is None,
           "the record is not minimised to what the officer needs")  # fmt: skip
    received = demo.population_db.received()
    sent = [x for x in received["lookups"] if x["MaYeuCau"] == lookup.request_id]
    _check(len(sent) == 1 and sent[0]["route"] == "lgsp" and sent[0]["MaTichHop"] == "037",
           f"the population DB saw {sent} through the LGSP (MaTichHop 037, FE:378)")  # fmt: skip
    _check(received["tokens"] >= 1, "the hub took no LGSP token")
    step(f"province → hub: citizen.lookup for {code} (officer {lookup.officer_id}) → LGSP token, "
         f"TraCuuThongTinCongDan (SOAP as application/xml) → 200 citizen.record '{record.result.value}' "
         f"(name parts Ho/ChuDem/Ten as family/middle/given name; relatives and old ID left out) in "
         f"{elapsed * 1000:.0f} ms, hub signature verified")  # fmt: skip

    payload = packets.to_element(lookup.model_copy(update={"request_id": f"TC-{secrets.token_hex(6).upper()}"}))
    payload.remove(payload.find("{urn:lienthong:packet:1}purpose"))
    bare = EnvelopeHeader(sender=demo.codes.province, receiver=demo.codes.hub, message_type="citizen.lookup",
                          dossier_code=code)  # fmt: skip
    refused = _lookup_post(demo, etree.tostring(sign_payload(demo.province.signer, bare, payload)))
    rules = [e.get("rule") for e in refused.json().get("errors", [])] if refused.status_code == 422 else []
    _check(rules == ["lookup-purpose-required"], f"a lookup without purpose: HTTP {refused.status_code} {rules}")
    step("a lookup without purpose → 422 lookup-purpose-required (Ninh Thuận Điều 28.2.b)")

    audit = demo.api("GET", "/api/v1/lookups", key=demo.operator_key, params={"dossier": code}).json()
    by_result = {row["result"]: row for row in audit}
    _check(sorted(by_result) == ["found", "refused"], f"audit rows for {code}: {[r['result'] for r in audit]}")
    found = by_result["found"]
    _check(found["officer_id"] == lookup.officer_id and found["purpose"] == lookup.purpose
           and found["source"] == demo.codes.population_db and bool(found["fields"]), f"audit row {found}")  # fmt: skip
    personal_id = lookup.personal_id or ""
    _check(bool(personal_id) and personal_id not in json.dumps(audit), "the audit keeps an unmasked personal ID")
    step(f"audit: found (officer {found['officer_id']}, subject {found['subject']}, {len(found['fields'])} fields) "
         f"and refused (no purpose) for {code}")  # fmt: skip
    return f"{code}: citizen.record found and verified; lookup without purpose refused 422; both audited"


# ---------------------------------------------------------------------------------------------- F3


def _pay(demo: DemoHub, **command: Any) -> dict[str, Any]:
    """The simulated payer pays (``/_pay``): the platform POSTs CONFIRM to the hub; its answer back."""
    answer = httpx.post(demo.payment.base_url + "/_pay", json=command, timeout=STEP_TIMEOUT_S)
    answer.raise_for_status()
    return answer.json()


def _waiting_for_fees(demo: DemoHub) -> str:
    """A new online dossier, received (2) then waiting for fees (6) on the portal; its code."""
    code = demo.dossier_code()
    t0 = _now() - dt.timedelta(hours=2)
    for status in (2, 6):
        model = new_online_dossier(code, status=status, submitted_at=t0, received_at=t0 + dt.timedelta(minutes=5))
        demo.wait_status(_submit(demo, model, expect_to=demo.to_portal(status)))
    # the bank's ThoiGianGD (hence the 6 → 4 update) has whole seconds: pay after the second of the status 6
    time.sleep(1.05 - time.time() % 1)
    return code


def _request_payment(demo: DemoHub, code: str) -> tuple[PaymentRequest, str]:
    """The province's payment.request for dossier ``code`` (INIT at the platform); the request and its message id."""
    from hub import packets

    base = _packet(PaymentRequest, packets.example("payment.request"))
    request = base.model_copy(update={"reference": f"PAY-{code}", "dossier_code": code,
                                      "agency_code": demo.codes.province,
                                      "description": f"Nộp phí, lệ phí hồ sơ {code}"})  # fmt: skip
    request_id = _submit(demo, request, expect_to=[demo.codes.payment])
    demo.wait_status(request_id)
    return request, request_id


def _receipt_at_province(demo: DemoHub, code: str) -> list[Any]:
    """The payment.receipt packets the province received for dossier ``code`` (hub-signed, verified)."""
    from lxml import etree

    from hub import packets

    inbox = [m for m in demo.province.received()["messages"] if m["message_type"] == "payment.receipt"
             and m["dossier_code"] == code]  # fmt: skip
    _check(all(m["verified"] for m in inbox), f"the province could not verify the hub's signature: {inbox}")
    return [packets.from_element("payment.receipt", etree.fromstring(m["payload"].encode())) for m in inbox]


def flow_f3(demo: DemoHub, step: Step) -> str:
    """F3 on the Payment Platform's sourced protocol (profile paygov/1.0.6): a dossier waiting for fees (status 6) →
    payment.request → INIT (SoTien a string, the full ThongTinBienLai) → UrlThanhToan → the payer pays → CONFIRM as
    the platform sends it (no receipt inside) → answered 200 MaLoi 00 with its fields echoed → the e-receipt fetched
    with GET_BILL, a PDF signed by the payment intermediary and validated with pyHanko (the receipt rule, Quảng Nam
    Điều 14.3) → payment.receipt (the PDF and its verification) to the province, status 4 to the portal; a forged
    CONFIRM and one with another amount are answered MaLoi 99; a repeated CONFIRM is answered the same and changes
    nothing. A second dossier's payment whose e-receipt is signed by another key is held: answered 00 (the payment
    happened) with the rule receipt-signer-not-registered, recorded for operators, no receipt to the province, the
    dossier left at 6."""
    from hub.flows.settlement import receipt_message_id, status_message_id
    from hub.security.pdf_signatures import inspect_pdf, registered

    assert demo.pdf_keys is not None
    code = _waiting_for_fees(demo)
    step(f"province → portal: dossier {code} received (2), then waiting for fees (6)")

    request, request_id = _request_payment(demo, code)
    reference = request.reference
    seen = demo.payment.received()
    initiated = seen["payments"].get(reference)
    _check(initiated is not None and initiated["SoTien"] == request.amount, f"INIT at the platform: {initiated}")
    _check(not seen["refused"], f"the platform refused: {seen['refused']}")
    init = next(r for r in seen["requests"] if r["LoaiBanTin"] == "INIT" and r["MaThamChieu"] == reference)
    # the payment page's URL, handed back to the province in its message's trace (read with its own key)
    mine = demo.api("GET", f"/api/v1/messages/{request_id}", key=demo.api_keys[demo.codes.province]).json()
    details = [str(e.get("detail") or "") for e in mine.get("events", [])]
    url = next((d for d in details if "UrlThanhToan=http" in d), "")
    _check(bool(url), f"no UrlThanhToan in the province's trace of {request_id}: {details}")
    step(f"province → hub → payment platform: payment.request {reference} → INIT (PhienBan {init['PhienBan']}, SoTien "
         f"\"{init['SoTien']}\", NgonNgu {init['NgonNgu']}, MaDichVu {init['ThongTinBienLai']['MaDichVu']}, "
         f"{len(init['ThongTinBienLai']['PhiLePhi'])} PhiLePhi) → MaLoi 00"
         + f", {url[url.index('UrlThanhToan='):].split(';')[0]} (in the province's trace)")  # fmt: skip

    paid = _pay(demo, MaThamChieu=reference)
    answer = paid.get("answer") or {}
    _check(paid.get("status") == 200 and answer.get("MaLoi") == "00" and not paid.get("issues")
           and not paid.get("rule"), f"CONFIRM answered {paid}")  # fmt: skip
    receipt_id, status_id = receipt_message_id(reference), status_message_id(reference)
    demo.track(receipt_id)
    demo.track(status_id)
    receipt_trace = demo.wait_status(receipt_id)
    status_trace = demo.wait_status(status_id)
    _check([d["destination"] for d in receipt_trace["deliveries"]] == [demo.codes.province],
           f"payment.receipt delivered to {receipt_trace['deliveries']}")  # fmt: skip
    _check(demo.codes.portal in [d["destination"] for d in status_trace["deliveries"]],
           f"status 4 delivered to {status_trace['deliveries']}")  # fmt: skip
    inbox = _receipt_at_province(demo, code)
    _check(len(inbox) == 1, f"payment.receipt at the province: {inbox}")
    progress = [int(p["TrangThai"]) for p in demo.portal.received()["progress"].get(code, [])]
    _check(progress[-1:] == [4], f"portal CapNhatTienDoHoSoMC statuses {progress}, expected the last to be 4")
    timeline = [u["status"] for u in _status_entries(demo, code)]
    _check(timeline[-2:] == [6, 4], f"timeline of {code}: {timeline}")
    bills = [r for r in demo.payment.received()["requests"] if r["LoaiBanTin"] == "GET_BILL"]
    _check(any(r["MaThamChieu"] == reference for r in bills), "no GET_BILL for the receipt")
    step("payer pays → CONFIRM (the sheet's fields, MaXacThuc verified) → 200 MaLoi 00, MaThamChieu/ThoiGianGD/"
         "MaXacThuc echoed → GET_BILL e-receipt (PDF) → payment.receipt at the province /inbox (verified), portal "
         "CapNhatTienDoHoSoMC 6 → 4")  # fmt: skip

    # the receipt rule: what reached the province is the signed PDF and the hub's verification of it
    receipt = inbox[0]
    checked = receipt.verification
    _check(checked is not None and checked.valid and checked.required and checked.format == "pdf"
           and checked.signer == demo.codes.payment and checked.signer_name == "payment-intermediary"
           and checked.validator.startswith("pyHanko"),
           f"the receipt's verification at the province: {checked}")  # fmt: skip
    assert checked is not None
    again_checked = inspect_pdf(receipt.signed_receipt, trust=registered(demo.codes.payment,
                                [demo.pdf_keys.intermediary.certificate]), signer=demo.codes.payment,
                                purpose="receipt")  # fmt: skip
    _check(again_checked.valid and again_checked.sha256 == checked.sha256,
           f"pyHanko on the PDF the province holds: {again_checked.as_dict()}")  # fmt: skip
    step(
        f"the province's payment.receipt carries the e-receipt PDF ({checked.size:,} bytes) signed by "
        f"{checked.signer_name} ({checked.trusted_as}) and its verification (valid, {checked.validator}, "
        f"covers the whole document: {checked.covers_whole_document}); pyHanko validates the PDF again"
    )

    forged = _pay(demo, MaThamChieu=reference, forge_checksum=True)
    _check(forged.get("status") == 200 and (forged.get("answer") or {}).get("MaLoi") == "99"
           and forged.get("rule") == "checksum", f"forged CONFIRM: {forged}")  # fmt: skip
    other = _pay(demo, MaThamChieu=reference, SoTien=request.amount + 1000)
    _check(other.get("status") == 200 and (other.get("answer") or {}).get("MaLoi") == "99"
           and other.get("rule") == "amount-mismatch", f"CONFIRM with another amount: {other}")  # fmt: skip
    refusals = demo.api("GET", "/api/v1/partner-refusals", key=demo.operator_key,
                        params={"connector": demo.codes.payment}).json()  # fmt: skip
    recorded = sorted(r["rule"] for r in refusals if r["reference"] == reference)
    _check(recorded == ["amount-mismatch"], f"recorded refusals for {reference}: {recorded}")
    step("forged MaXacThuc → 200 MaLoi 99 (X-Lienthong-Rule checksum; never authenticated: counted in "
         "lienthong_callbacks_refused_total, not stored); another amount → 200 MaLoi 99 'amount-mismatch', recorded "
         "in GET /api/v1/partner-refusals")  # fmt: skip

    again = _pay(demo, MaThamChieu=reference)
    _check(again.get("status") == 200 and again.get("answer") == answer, f"repeated CONFIRM: {again} vs {answer}")
    time.sleep(0.5)  # nothing may be routed again
    _check(len(demo.trace(receipt_id)["deliveries"]) == 1, "the repeated CONFIRM routed the receipt again")
    _check(len(_receipt_at_province(demo, code)) == 1, "the province received the receipt twice")
    step("repeated CONFIRM → the same answer (200 MaLoi 00); nothing routed twice")

    held = _held_receipt(demo, step)
    return (f"{code}: {reference} paid, e-receipt signed by the intermediary (pyHanko: valid) to the province, portal "
            f"6 → 4; forged and mismatched refused; repeat idempotent; {held}")  # fmt: skip


HELD_RULE = "receipt-signer-not-registered"


def _held_receipt(demo: DemoHub, step: Step) -> str:
    """F3's second payment: its e-receipt is signed by another key of the same CA → held with a named rule."""
    from hub.flows.settlement import receipt_message_id, status_message_id

    code = _waiting_for_fees(demo)
    request, _ = _request_payment(demo, code)
    reference = request.reference
    paid = _pay(demo, MaThamChieu=reference, receipt_signer="other")
    answer = paid.get("answer") or {}
    _check(paid.get("status") == 200 and answer.get("MaLoi") == "00" and not paid.get("issues")
           and paid.get("rule") == HELD_RULE,
           f"CONFIRM of a payment whose receipt another key signed: {paid}")  # fmt: skip
    refusals = demo.api("GET", "/api/v1/partner-refusals", key=demo.operator_key,
                        params={"connector": demo.codes.payment}).json()  # fmt: skip
    mine = [(r["kind"], r["rule"]) for r in refusals if r["reference"] == reference]
    _check(mine == [("payment.receipt", HELD_RULE)], f"recorded for {reference}: {mine}")
    again = _pay(demo, MaThamChieu=reference)  # the platform resends it: checked again, held again, nothing new
    _check((again.get("answer"), again.get("rule")) == (answer, HELD_RULE), f"repeated CONFIRM: {again}")
    time.sleep(0.5)  # nothing may be routed
    for message_id in (receipt_message_id(reference), status_message_id(reference)):
        missing = demo.api("GET", f"/api/v1/messages/{message_id}")
        _check(missing.status_code == 404, f"{message_id} was routed: HTTP {missing.status_code}")
    _check(_receipt_at_province(demo, code) == [], "the province received a receipt another key signed")
    progress = [int(p["TrangThai"]) for p in demo.portal.received()["progress"].get(code, [])]
    timeline = [u["status"] for u in _status_entries(demo, code)]
    _check(4 not in progress and timeline[-1:] == [6], f"dossier {code}: portal {progress}, timeline {timeline}")
    refused = demo.api("GET", "/api/v1/partner-refusals", key=demo.operator_key,
                       params={"connector": demo.codes.payment}).json()  # fmt: skip
    _check(len([r for r in refused if r["reference"] == reference]) == 1, "the repeated CONFIRM was recorded again")
    step(
        f"dossier {code}: the payer pays, GET_BILL's PDF is signed by other-signer (same CA, not registered) → "
        f"CONFIRM answered 200 MaLoi 00 (the payment happened) with X-Lienthong-Rule {HELD_RULE}; held: refusal "
        "'payment.receipt' in GET /api/v1/partner-refusals (the console's rejected payment confirmations), no "
        "payment.receipt to the province, the dossier stays at 6; the resent CONFIRM is held the same, recorded once"
    )
    return f"{code}: receipt signed by another key held ({HELD_RULE}), dossier left at 6"


# ---------------------------------------------------------------------------------------------- F4


def flow_f4(demo: DemoHub, step: Step) -> str:
    """F4 (VNPost, profile vnpost/ngsp): a pickup order (the citizen sends the dossier) and, once the dossier is done
    (9), a result delivery with COD → orders at VNPost with a pre-issued ItemCode and VNPost's integer area codes;
    the courier's events → ``PostalTracker.poll`` (pages by ``$oid``) → one postal.status each at the province,
    never twice; the result delivered → dossier status 10 on the national portal."""
    from hub import packets
    from hub.flows.postal_tracking import tracker_for
    from hub.packets.postal import Direction
    from hub.runtime import Runtime

    code = demo.dossier_code()
    t0 = _now() - dt.timedelta(hours=3)

    def sync(status: int) -> None:
        model = new_online_dossier(code, status=status, submitted_at=t0, received_at=t0 + dt.timedelta(minutes=5))
        demo.wait_status(_submit(demo, model, expect_to=demo.to_portal(status)))

    sync(2)  # received: the citizen chose to send the paper dossier by post
    base = _packet(PostalOrder, packets.example("postal.order"))
    pickup = base.model_copy(update={"dossier_code": code, "direction": Direction.PICKUP, "sender": base.receiver,
                                     "receiver": base.sender, "cod_amount": 0, "item_code": None,
                                     "contents": "Đơn đề nghị cấp giấy phép xây dựng; bản vẽ thiết kế",
                                     "description": f"Thu gom hồ sơ {code} tại nhà công dân"})  # fmt: skip
    demo.wait_status(_submit(demo, pickup, expect_to=[demo.codes.postal]))
    orders = [o for o in demo.postal.received()["orders"].values() if o["OrderNumber"] == code]
    _check(len(orders) == 1, f"orders at VNPost for {code}: {orders}")
    sent = orders[0]
    _check(sent["CustomerCode"] == POSTAL_CUSTOMER and sent.get("ItemCode") in POSTAL_ITEM_CODES
           and all(type(sent[k]) is int for k in ("SenderProvince", "SenderDistrict", "ReceiverProvince",
                                                  "ReceiverDistrict")), f"order at VNPost: {sent}")  # fmt: skip
    step(f"province → hub → VNPost (token: Basic consumer key, then '<token_type> <token>'): pickup {code} → "
         f"Status 100, ItemCode {sent['ItemCode']} (pre-issued pool), SenderProvince {sent['SenderProvince']} / "
         f"District {sent['SenderDistrict']} (VNPost's codes for 48/492)")  # fmt: skip

    sync(9)  # done: the result can go out
    cod = 75_000
    delivery = base.model_copy(update={"dossier_code": code, "item_code": None, "cod_amount": cod})
    demo.wait_status(_submit(demo, delivery, expect_to=[demo.codes.postal]))
    result = [o for o in demo.postal.received()["orders"].values() if o["OrderNumber"] == code
              and o["ItemCode"] != sent["ItemCode"]]  # fmt: skip
    _check(len(result) == 1 and result[0]["CODAmount"] == cod, f"result delivery at VNPost: {result}")
    step(f"dossier {code} done (9) on the portal; result delivery → ItemCode {result[0]['ItemCode']}, "
         f"CODAmount {cod:,} → Status 100")  # fmt: skip

    courier = [(sent["ItemCode"], 2, "Đã nhận hồ sơ tại nhà công dân"),
               (sent["ItemCode"], 4, "Đã phát cho Bộ phận Một cửa"),
               (result[0]["ItemCode"], 3, "Đang vận chuyển"),
               (result[0]["ItemCode"], 4, "Đã phát thành công, đã thu tiền")]  # fmt: skip
    for item, status_code, message in courier:
        event = {"ItemCode": item, "StatusCode": status_code, "StatusMessage": message}
        advanced = httpx.post(demo.postal.base_url + "/_advance", json=event, timeout=5)
        _check(advanced.status_code == 200, f"/_advance {status_code}: HTTP {advanced.status_code}")
    runtime = Runtime.open(demo.settings)
    tracker = tracker_for(runtime)
    try:
        first = tracker.poll(demo.codes.postal, page_size=4)  # 6 events: two pages, the second from the last $oid
        second = tracker.poll(demo.codes.postal)
    finally:
        runtime.close()
    mine = [e for e in demo.postal.received()["events"] if e["OrderNumber"] == code]
    _check(first.seen >= len(mine) == 6 and not first.errors, f"first poll: {first}")
    _check(second.emitted == [] and second.returned == [], f"second poll emitted {second.emitted}")
    _check(len(first.returned) == 1, f"status 10 routed for {first.returned}, expected the one result delivery")
    for message_id in [*first.emitted, *first.returned]:
        demo.track(message_id)
        demo.wait_status(message_id)
    step(f"courier events → poll (pagesize 4, then lastId=<$oid>) → {len(first.emitted)} postal.status; poll again → "
         f"{len(second.emitted)} new")  # fmt: skip

    inbox = [m for m in demo.province.received()["messages"] if m["message_type"] == "postal.status"
             and m["dossier_code"] == code]  # fmt: skip
    states = sorted(_packet_text(m["payload"], "state") or "?" for m in inbox)
    _check(states == sorted(["created", "created", "picked_up", "delivered", "in_transit", "delivered"]),
           f"postal.status states at the province: {states}")  # fmt: skip
    _check(all(m["verified"] for m in inbox), "the province could not verify the hub's signature")
    collected = [_packet_text(m["payload"], "codAmount") for m in inbox if _packet_text(m["payload"], "state")
                 == "delivered" and _packet_text(m["payload"], "direction") == "delivery"]  # fmt: skip
    _check(collected == [str(cod)], f"COD reported with the delivered result: {collected}")
    step(f"province /inbox: postal.status {', '.join(states)} (hub-signed); the delivered result reports COD {cod:,}")

    record = demo.portal.received()["records"][code]
    progress = [int(p["TrangThai"]) for p in demo.portal.received()["progress"].get(code, [])]
    _check(str(record["TrangThaiHoSo"]) == "10" and progress[-1:] == [10],
           f"portal TrangThaiHoSo {record['TrangThaiHoSo']}, CapNhatTienDoHoSoMC {progress}: expected 10")  # fmt: skip
    step("result delivered (StatusCode 4 → delivered) → dossier.status 10 → portal CapNhatTienDoHoSoMC TrangThai 10")
    return (f"{code}: pickup {sent['ItemCode']} and result {result[0]['ItemCode']} (COD {cod:,}) at VNPost; "
            f"{len(first.emitted)} events to the province once each; delivered → 10 on the portal")  # fmt: skip


def _packet_text(payload: str, element: str) -> str | None:
    from lxml import etree

    from hub import packets

    return etree.fromstring(payload.encode()).findtext(f"{{{packets.PACKET_NAMESPACE}}}{element}")


def _receipt_check_of(payload: str) -> str:
    """A payment.receipt's verification in a few words: who signed its document and what the hub found."""
    from lxml import etree

    from hub import packets

    ns = {"p": packets.PACKET_NAMESPACE}
    checked = etree.fromstring(payload.encode()).find("p:verification", ns)
    if checked is None:
        return " (no verification)"
    found = {name: checked.findtext(f"p:{name}", namespaces=ns) for name in ("valid", "rule", "format", "signerName")}
    verdict = "valid" if found["valid"] == "true" else found["rule"]
    return f" (e-receipt {found['format']} signed by {found['signerName'] or 'nobody'}: {verdict})"


def _postal_code_of(payload: str) -> str:
    return _packet_text(payload, "statusCode") or "?"


# ---------------------------------------------------------------------------------------------- F5


def _vbdlis_time(at: dt.datetime) -> str:
    """A time as VBDLIS sends it: .NET ``DateTime`` in ISO 8601, local (Asia/Ho_Chi_Minh), without an offset (the
    connector's ``local_utc_offset``; PARTNER-FORMATS §5)."""
    return at.astimezone(dt.timezone(dt.timedelta(hours=7))).strftime("%Y-%m-%dT%H:%M:%S")


def _file(name: str, url: str) -> dict[str, Any]:
    """A VBDLIS file descriptor {TenGiayTo, KieuFile, LinkFile, SoBanSao, SoBanChinh} (PARTNER-FORMATS §5)."""
    return {"TenGiayTo": name, "KieuFile": "pdf", "LinkFile": url, "SoBanSao": 0, "SoBanChinh": 1}


def flow_f5(demo: DemoHub, step: Step) -> str:
    """F5: the land registration software (VBDLIS, profile ``ministry/vbdlis-json``) posts its per-step JSON to the
    hub's ``/api/v1/VBDLISs/<action>/{securityCode}`` → answered ``{Result, Message}`` → canonical status → the
    province and the portal; the same step again is applied once, an illegal transition refused with Result 0.
    (The XML steps, profile ``ministry/xml-steps``, are tested in tests/integration/test_api_ministry.py.)"""
    code = demo.dossier_code()
    t0 = _now() - dt.timedelta(hours=1)
    sync = _submit(demo, new_online_dossier(code, status=2, submitted_at=t0, received_at=t0 + dt.timedelta(minutes=5)),
                   expect_to=demo.to_portal(2))  # fmt: skip
    demo.wait_status(sync)
    step(f"province → portal: dossier {code} received (status 2)")

    def at(minutes: int) -> str:
        return _vbdlis_time(t0 + dt.timedelta(minutes=10 + minutes))

    files = f"https://vbdlis.lienthong.example.gov.vn/files/{code}"
    # TH-BR *Request.cs fields (PARTNER-FORMATS §5); officers are VBDLIS user codes
    steps: list[tuple[str, int, dict[str, Any]]] = [
        ("ChuyenHoSo", 4, {"SoBienNhan": code, "MaCanBoChuyen": "cb.motcua.03", "MaCanBoNhan": "cb.tnmt.07",
                           "MaTrangThai": "2", "LaTrangThaiChuyenLai": False, "NgayChuyen": at(1), "HanXuLy": 3,
                           "NoiDungXuLy": "Chuyển hồ sơ sang bộ phận thẩm định",
                           "DanhSachTapTin": [_file("Đơn đăng ký biến động", f"{files}/don.pdf")]}),
        ("YeuCauBoSungHoSo", 5, {"SoBienNhan": code, "NgayChoBoSung": at(2), "MaCanBoXuLy": "cb.tnmt.07",
                                 "LaTamDung": True, "GhiChu": "Đề nghị bổ sung bản sao giấy chứng nhận"}),
        ("NhanBoSungHoSo", 4, {"SoBienNhan": code, "NgayNhanBoSung": at(3),
                               "NgayHenTraMoi": _vbdlis_time(t0 + dt.timedelta(days=12)),
                               "GhiChu": "Công dân đã bổ sung hồ sơ"}),
        ("KetThucHoSo", 9, {"SoBienNhan": code, "NgayKetThuc": at(4), "MaCanBoXuLy": "cb.tnmt.07",
                            "TrangThaiKetThuc": 0, "GhiChu": "Hoàn thành thẩm định, trả kết quả",
                            "DanhSachGiayToKetQua": [_file("Giấy chứng nhận quyền sử dụng đất", f"{files}/gcn.pdf")]}),
    ]  # fmt: skip
    seen = 0
    for action, status, body in steps:
        answer = demo.vbdlis.send(action, body)
        _check(answer.accepted, f"{action}: HTTP {answer.status} {answer.answer}")
        updates = [u for u in demo.api("GET", f"/api/v1/dossiers/{code}").json()["updates"]
                   if u["source"] == demo.codes.vbdlis]  # fmt: skip
        _check(len(updates) == seen + 1 and updates[-1]["status"] == status, f"{action}: timeline {updates}")
        seen += 1
        message_id = updates[-1]["message_id"]
        demo.track(message_id)
        trace = demo.wait_status(message_id)
        dests = sorted(d["destination"] for d in trace["deliveries"])
        _check(dests == sorted([*demo.codes.destinations, *demo.notified(status)]), f"{action} delivered to {dests}")
        told = " and the applicant (email, SMS)" if demo.notified(status) else ""
        step(f"VBDLIS → hub: POST /api/v1/VBDLISs/{action}/*** → Result 1 → status {status} → delivered to "
             f"province and portal{told}")  # fmt: skip

    inbox = [m for m in demo.province.received()["messages"] if m["dossier_code"] == code]
    statuses = [_status_of(m["payload"]) for m in inbox]
    _check(statuses == [4, 5, 4, 9], f"province received statuses {statuses}, expected [4, 5, 4, 9]")
    _check(all(m["verified"] for m in inbox), "the province could not verify the hub's signature")
    progress = [int(p["TrangThai"]) for p in demo.portal.received()["progress"].get(code, [])]
    _check(progress == [4, 5, 4, 9], f"portal CapNhatTienDoHoSoMC statuses {progress}, expected [4, 5, 4, 9]")
    record = demo.portal.received()["records"][code]
    _check(str(record["TrangThaiHoSo"]) == "9", f"portal TrangThaiHoSo {record['TrangThaiHoSo']}, expected 9")
    step("province /inbox got 4, 5, 4, 9 (hub signature verified); portal CapNhatTienDoHoSoMC 4, 5, 4, 9")

    again = demo.vbdlis.send("KetThucHoSo", steps[-1][2])
    _check(again.accepted and "already received" in again.answer["Message"], f"the same step again: {again.answer}")
    time.sleep(1.0)  # nothing may be delivered again
    _check(len([m for m in demo.province.received()["messages"] if m["dossier_code"] == code]) == 4,
           "the repeated step reached the province")  # fmt: skip
    step("KetThucHoSo posted again: Result 1 'already received', nothing delivered twice")

    late = {**steps[1][2], "NgayChoBoSung": at(6), "GhiChu": "Yêu cầu bổ sung sau khi đã kết thúc"}
    refused = demo.vbdlis.send("YeuCauBoSungHoSo", late)
    _check(refused.well_formed and refused.answer["Result"] == 0, f"illegal transition answered {refused.answer}")
    step(f"YeuCauBoSungHoSo after KetThucHoSo (9 → 5): Result 0 '{refused.answer['Message'][:80]}'")

    timeline = demo.api("GET", f"/api/v1/dossiers/{code}").json()
    outcomes = [u["outcome"] for u in timeline["updates"] if u["source"] == demo.codes.vbdlis]
    _check(outcomes == ["applied"] * 4 + ["rejected"], f"timeline outcomes {outcomes}")
    return f"{code}: 4 VBDLIS steps reached province and portal; the repeat applied once, 9→5 refused"


def _status_of(payload: str) -> int:
    from lxml import etree

    from hub import packets

    element = etree.fromstring(payload.encode())
    return int(element.findtext(f"{{{packets.PACKET_NAMESPACE}}}status"))


# ---------------------------------------------------------------------------------------------- F6


def flow_f6(demo: DemoHub, step: Step) -> str:
    """F6: the portal down for a while → retries with backoff → delivered; the portal refuses a record → dead letter
    with its message → fixed → replayed through the API by an operator → delivered."""
    code = demo.dossier_code()
    demo.portal.fail("down", seconds=3)
    started = time.monotonic()
    message_id = _submit(demo, new_online_dossier(code), expect_to=demo.to_portal(1))
    step(f"portal down for 3 s (connections reset); province → hub: dossier.sync {code}")

    def to_the_portal(trace: dict[str, Any]) -> dict[str, Any]:
        return next(d for d in trace["deliveries"] if d["destination"] == demo.codes.portal)

    wait_for(lambda: to_the_portal(demo.trace(message_id))["attempts"] >= 2, STEP_TIMEOUT_S,
             "a retry of the delivery to the portal")  # fmt: skip
    trace = demo.wait_status(message_id)
    attempts = to_the_portal(trace)["attempts"]
    retries = [e for e in trace["events"] if e["state"] == "retry_scheduled"
               and e["destination"] == demo.codes.portal]  # fmt: skip
    _check(attempts >= 2 and bool(retries), f"delivered after {attempts} attempt(s), expected retries")
    _check(code in demo.portal.received()["records"], f"the portal has no record of {code} after recovery")
    step(f"{len(retries)} failed attempt(s) retried with backoff; delivered on attempt {attempts}, "
         f"{time.monotonic() - started:.1f}s after the outage began")  # fmt: skip

    refused = demo.dossier_code()
    demo.portal.reject_next(1)
    message_id = _submit(demo, new_online_dossier(refused), expect_to=demo.to_portal(1))
    found: dict[str, Any] = {}

    def dead_letter() -> bool:
        answer = demo.api("GET", "/api/v1/dead-letters", key=demo.operator_key)
        for item in answer.json():
            if item["message_id"] == message_id and item["destination"] == demo.codes.portal:
                found.update(item)
                return True
        return False

    wait_for(dead_letter, STEP_TIMEOUT_S, f"the dead letter of {message_id}")
    _check(found["reason"] == "rejected" and found["attempts"] == 1,
           f"dead letter {found}: expected reason rejected after 1 attempt (a refusal is not retried)")  # fmt: skip
    said = f"error_code {demo.portal.refusal_code}: "
    _check(said in found["last_error"], f"the portal's message is not kept: {found['last_error']}")
    step(f"portal refuses {refused} ({said.rstrip(': ')}): dead letter #{found['id']} after 1 attempt: "
         f"{found['last_error'].split(said, 1)[-1][:70]}")  # fmt: skip
    demo.portal.heal()
    demo.portal.control({"invalid": 0})
    replay = demo.api("POST", f"/api/v1/dead-letters/{found['id']}/replay", key=demo.operator_key)
    _check(replay.status_code == 202, f"replay: HTTP {replay.status_code} {replay.text[:200]}")
    demo.wait_status(message_id)
    _check(refused in demo.portal.received()["records"], f"the portal has no record of {refused} after the replay")
    trace = demo.trace(message_id)
    replayed = [e for e in trace["events"] if e["state"] == "replayed"]
    _check(bool(replayed) and replayed[0]["actor"] == demo.settings.operator_name, f"replay events {replayed}")
    step(
        f"portal fixed; operator replays dead letter #{found['id']} (POST /api/v1/dead-letters/{found['id']}/replay)"
        " → delivered"
    )
    demo.dead_letter_id = found["id"]
    return f"{code} delivered after the outage ({attempts} attempts); {refused} dead-lettered, replayed, delivered"


def leave_dead_letter_for_the_operator(demo: DemoHub) -> int:
    """After the flows, when the demo keeps serving: one more portal refusal, left as a dead letter for a person
    to find on the operator page and replay there. Returns its id."""
    demo.portal.reject_next(1)
    message_id = _submit(demo, new_online_dossier(demo.dossier_code()), expect_to=demo.to_portal(1))
    found: list[int] = []

    def dead_letter() -> bool:
        answer = demo.api("GET", "/api/v1/dead-letters", key=demo.operator_key)
        found.extend(item["id"] for item in answer.json() if item["message_id"] == message_id)
        return bool(found)

    wait_for(dead_letter, STEP_TIMEOUT_S, f"the dead letter of {message_id}")
    demo.portal.control({"invalid": 0})  # the portal is "fixed": a replay from the page will go through
    return found[0]


# ---------------------------------------------------------------------------------------------- F7

#: F7's applicant (invented), told of their dossier by email and SMS (Đắk Nông QĐ 04/2019 Điều 12)
F7_APPLICANT = {"name": "Lê Thị Hoa", "email": "lethihoa@example.vn", "phone": "0987654321", "notify": True}
RESULT_NAME = "Giấy chứng nhận quyền sử dụng đất"  # F7's result document


def _mails(demo: DemoHub, code: str) -> list[ReceivedMail]:
    """The notification emails the demo's SMTP server received about dossier ``code``."""
    assert demo.mail is not None
    return [m for m in demo.mail.messages() if m.message["X-Lienthong-Dossier"] == code]


def _texts(demo: DemoHub, code: str) -> list[dict[str, Any]]:
    """The SMS the gateway simulator received about dossier ``code``."""
    return [m for m in demo.sms.received()["messages"] if code in m["text"]]


def _told(at: dt.datetime) -> str:
    """A time as a notification tells it (local, ``mappings.notification``)."""
    return at.astimezone(LOCAL_TIME).strftime("%H:%M ngày %d/%m/%Y")


def _ministry_step(demo: DemoHub, update: Any, what: str, status: int) -> str:
    """The ministry pushes ``update`` (its ``<BuocXuLy>`` step or a canonical ``dossier.status``): accepted, applied
    and routed to the province, the portal and, for a moment the applicant is told of, their notifications."""
    sent = demo.ministry.push(update)
    _check(sent.accepted and sent.body.get("status_update") == "applied", f"{what}: HTTP {sent.status} {sent.body}")
    expected = sorted([*demo.codes.destinations, *demo.notified(status)])
    _check(sorted(sent.body.get("destinations", [])) == expected,
           f"{what} routed to {sent.body.get('destinations')}, expected {expected}")  # fmt: skip
    demo.track(sent.message_id)
    return sent.message_id


def _inbox_statuses(demo: DemoHub, code: str) -> list[int]:
    """The dossier.status updates the province received about ``code`` (each hub-signed and verified)."""
    inbox = [m for m in demo.province.received()["messages"]
             if m["dossier_code"] == code and m["message_type"] == "dossier.status"]  # fmt: skip
    _check(all(m["verified"] for m in inbox), "the province could not verify the hub's signature")
    return [_status_of(m["payload"]) for m in inbox]


def flow_f7(demo: DemoHub, step: Step) -> str:
    """F7, the life of a dossier (issue 16): submitted online → the applicant told by email (the SMTP server's copy
    read) and SMS → received → the ministry asks for a supplement (SMS) → supplement received with a new due date
    (the portal's record carries DanhSachHoSoBoSung with NgayHenTraMoi) → finished with a result PDF signed by the
    competent agency (verified by the hub before forwarding) → the result told → returned (10) on the portal.
    Then another dossier finished with a result signed by a key registered for nothing: held before reaching
    anyone (a dead letter per destination, rule ``result-signer-not-registered``), the ministry re-signs it, the
    operator replays → checked again and forwarded."""
    from hub.devtools.simulators import MinistryStep

    assert demo.mail is not None and demo.pdf_keys is not None
    _check(demo.options.notifications, "F7 needs the citizen notification connectors (DemoOptions.notifications)")
    code = demo.dossier_code()
    t0 = _now() - dt.timedelta(hours=2)
    received_at = t0 + dt.timedelta(minutes=5)
    first_due = received_at + dt.timedelta(days=15)  # new_online_dossier's appointment date
    new_due = first_due + dt.timedelta(days=3)  # the applicant took three days to supplement

    def sync(status: int, **fields: Any) -> DossierSync:
        base = new_online_dossier(code, status=status, submitted_at=t0,
                                  received_at=None if status == 1 else received_at)  # fmt: skip
        model = base.model_copy(update={"applicant": base.applicant.model_copy(update=F7_APPLICANT), **fields})
        demo.wait_status(_submit(demo, model, expect_to=demo.to_portal(status)))
        return model

    intake = sync(1)
    applicant = intake.applicant
    mails, texts = _mails(demo, code), _texts(demo, code)
    _check(len(mails) == 1 and len(texts) == 1, f"intake notifications: {len(mails)} emails, {len(texts)} SMS")
    mail, sms = mails[0], texts[0]
    said = [f"Kính gửi ông/bà {applicant.name},", f"đã nhận được hồ sơ {code} ({intake.procedure_name}) lúc "
            f"{_told(t0)}.", "kiểm tra tính đầy đủ, hợp lệ trong thời hạn 08 giờ làm việc"]  # fmt: skip
    _check(mail.subject == f"[{code}] Cơ quan đã nhận được hồ sơ của ông/bà" and mail.rcpt_tos == (applicant.email,)
           and all(line in mail.text for line in said), f"intake email {mail.subject!r}: {mail.text!r}")  # fmt: skip
    _check(sms["to"] == applicant.phone and f"Cơ quan đã nhận hồ sơ {code} lúc {_told(t0)}" in sms["text"],
           f"intake SMS {sms}")  # fmt: skip
    personal_id = applicant.personal_id or ""
    _check(bool(personal_id) and personal_id not in mail.text + sms["text"], "a notification carries the personal ID")
    step(f"province → hub: dossier.sync {code} status 1 (online) → portal; the applicant told: email over SMTP "
         f"'{mail.subject}' ('{said[1]}'), SMS '{sms['text'][:60]}…'; no personal ID in either")  # fmt: skip

    sync(2, due_at=first_due)
    step(f"received (2), due {_told(first_due)}: the applicant told again (email, SMS)")

    content = "Bổ sung bản sao giấy chứng nhận quyền sử dụng đất có chứng thực"
    requested = MinistryStep(dossier_code=code, step="ChoBoSung", at=t0 + dt.timedelta(minutes=10),
                             actor="Phạm Văn Đức", department="Văn phòng đăng ký đất đai", content=content)  # fmt: skip
    demo.wait_status(_ministry_step(demo, requested, "ChoBoSung", 5))
    asked = [m for m in _texts(demo, code) if "cần bổ sung" in m["text"]]
    _check(len(asked) == 1 and asked[0]["to"] == applicant.phone and content in asked[0]["text"],
           f"supplement SMS: {asked}")  # fmt: skip
    step(f"ministry → hub: <BuocXuLy> ChoBoSung (5) → province, portal; the applicant's SMS: '{asked[0]['text']}'")

    answered = DossierStatusUpdate(
        dossier_code=code, status=4, at=t0 + dt.timedelta(minutes=20), source_system=demo.codes.ministry,
        step=ProcessingStep(actor="Phạm Văn Đức", content="Đã nhận bản sao giấy chứng nhận"), new_due_at=new_due,
    )  # fmt: skip
    demo.wait_status(_ministry_step(demo, answered, "supplement received", 4))
    record = demo.portal.received()["records"][code]
    rounds = record.get("DanhSachHoSoBoSung") or []
    moved = [(r.get("NgayHenTraTruoc"), r.get("NgayHenTraMoi")) for r in rounds]
    _check(moved == [(to_portal_time(first_due), to_portal_time(new_due))]
           and record["NgayHenTra"] == to_portal_time(new_due),
           f"portal DanhSachHoSoBoSung {moved}, NgayHenTra {record['NgayHenTra']}")  # fmt: skip
    progress = [int(p["TrangThai"]) for p in demo.portal.received()["progress"].get(code, [])]
    _check(progress == [5, 4], f"portal CapNhatTienDoHoSoMC statuses {progress}, expected [5, 4]")
    due_at = demo.api("GET", f"/api/v1/dossiers/{code}").json()["due_at"]
    _check(due_at is not None and dt.datetime.fromisoformat(due_at) == new_due, f"the hub's due date {due_at}")
    step(f"ministry → hub: supplement received, a dossier.status 4 with newDueAt (its XML step has no field for "
         f"it) → portal CapNhatTienDoHoSoMC 4, then DongBoHoSoMC with DanhSachHoSoBoSung NgayHenTraTruoc "
         f"{moved[0][0]} → NgayHenTraMoi {moved[0][1]}; the hub's due date moved")  # fmt: skip

    result = demo.ministry.signed_result(code, demo.pdf_keys.agency, name=RESULT_NAME, with_digest=True)
    finished = MinistryStep(dossier_code=code, step="KetThuc", at=t0 + dt.timedelta(minutes=30),
                            actor="Phạm Văn Đức", results=[result])  # fmt: skip
    finished_id = _ministry_step(demo, finished, "KetThuc", 9)
    trace = demo.wait_status(finished_id)
    name = result.url.rsplit("/", 1)[-1]
    fetched = demo.ministry.received()["documents_fetched"].count(name)
    _check(fetched >= len(trace["deliveries"]), f"the result was fetched {fetched} times for "
           f"{len(trace['deliveries'])} deliveries: not every one checked it")  # fmt: skip
    _check(_inbox_statuses(demo, code) == [5, 4, 9], f"province received statuses {_inbox_statuses(demo, code)}")
    step(f"ministry → hub: KetThuc (9) with its result PDF signed by the competent agency → each of its "
         f"{len(trace['deliveries'])} deliveries fetched it and verified the signature (pyHanko, against the "
         f"ministry's registered result signer) before forwarding → province /inbox 5, 4, 9, portal 9")  # fmt: skip

    told = [m for m in _mails(demo, code) if m.subject == f"[{code}] Hồ sơ đã giải quyết xong, mời nhận kết quả"]
    texted = [m for m in _texts(demo, code) if "đã giải quyết xong" in m["text"]]
    _check(len(told) == 1 and f"Kết quả: {RESULT_NAME}." in told[0].text and len(texted) == 1
           and RESULT_NAME in texted[0]["text"],
           f"result notifications: {[m.text for m in told]}, {texted}")  # fmt: skip
    step(f"the applicant told of the result: email '{told[0].subject}', SMS '{texted[0]['text'][:70]}…'")

    returned_at = t0 + dt.timedelta(minutes=40)
    supplement = Supplement(supplement_id="BS-1", requested_by="Phạm Văn Đức", content=content,
                            requested_at=requested.at, received_at=answered.at, previous_due_at=first_due,
                            new_due_at=new_due)  # fmt: skip
    sync(10, due_at=new_due, finished_at=finished.at, returned_at=returned_at,
         results=[Result(code=result.code, name=result.name, url=result.url)],
         supplements=[supplement])  # fmt: skip
    record = demo.portal.received()["records"][code]
    _check(str(record["TrangThaiHoSo"]) == "10", f"portal TrangThaiHoSo {record['TrangThaiHoSo']}, expected 10")
    statuses = [u["status"] for u in _status_entries(demo, code)]
    _check(statuses == [1, 2, 5, 4, 9, 10], f"timeline of {code}: {statuses}")
    notes = [u for u in demo.api("GET", f"/api/v1/dossiers/{code}").json()["updates"] if u["outcome"] == "notified"]
    mails, texts = _mails(demo, code), _texts(demo, code)
    _check(len(mails) == len(texts) == 4 and len(notes) == 8,
           f"{len(mails)} emails, {len(texts)} SMS, {len(notes)} on the timeline: expected 4, 4, 8")  # fmt: skip
    step(f"province → hub: returned (10) → portal TrangThaiHoSo 10; timeline 1, 2, 5, 4, 9, 10 with the "
         f"{len(notes)} notifications (intake, received, supplement, result; email and SMS)")  # fmt: skip

    held = _held_result(demo, step)
    return (f"{code}: intake → supplement (new due date on the portal) → signed result verified → returned (10), "
            f"the applicant told 4 times by email and SMS; {held}")  # fmt: skip


def _held_result(demo: DemoHub, step: Step) -> str:
    """F7's second dossier: a result signed by a key registered for nothing is held with its rule, nothing reaches
    anyone; the ministry re-signs it with its registered key, the operator replays, it goes."""
    from hub.devtools.simulators import MinistryStep

    assert demo.pdf_keys is not None
    code = demo.dossier_code()
    t0 = _now() - dt.timedelta(hours=1)
    demo.wait_status(_submit(demo, new_online_dossier(code, status=2, submitted_at=t0, received_at=t0),
                             expect_to=demo.to_portal(2)))  # fmt: skip
    forged = demo.ministry.signed_result(code, demo.pdf_keys.other, name=RESULT_NAME)
    finished = MinistryStep(dossier_code=code, step="KetThuc", at=t0 + dt.timedelta(minutes=30),
                            actor="Phạm Văn Đức", results=[forged])  # fmt: skip
    message_id = _ministry_step(demo, finished, "KetThuc (wrong key)", 9)
    expected = sorted([*demo.codes.destinations, *demo.notified(9)])
    found: list[dict[str, Any]] = []

    def held() -> bool:
        answer = demo.api("GET", "/api/v1/dead-letters", key=demo.operator_key).json()
        found[:] = [d for d in answer if d["message_id"] == message_id]
        return len(found) == len(expected)

    wait_for(held, STEP_TIMEOUT_S, f"the result of {code} held for each of its {len(expected)} destinations")
    rules = {d["reason"] for d in found}
    _check(rules == {"result-signer-not-registered"} and sorted(d["destination"] for d in found) == expected,
           f"dead letters {[(d['destination'], d['reason']) for d in found]}")  # fmt: skip
    _check(9 not in _inbox_statuses(demo, code), "the province received a result signed by the wrong key")
    progress = [int(p["TrangThai"]) for p in demo.portal.received()["progress"].get(code, [])]
    _check(9 not in progress, f"the portal received a result signed by the wrong key: {progress}")
    _check(not any("giải quyết xong" in m.subject for m in _mails(demo, code)) and
           not any("giải quyết xong" in m["text"] for m in _texts(demo, code)),
           "the applicant was told of a result signed by the wrong key")  # fmt: skip
    status = demo.api("GET", f"/api/v1/dossiers/{code}").json()["status"]
    _check(status == 9, f"{code} is at status {status}: the finished step itself is applied, only held")
    ids = sorted(d["id"] for d in found)
    step(f"{code}: KetThuc with its result signed by other-signer (issued by the same CA, registered for nothing) "
         f"→ the dossier is 9, but held before forwarding: dead letters {', '.join(f'#{i}' for i in ids)} "
         f"(province, portal, email, SMS), rule result-signer-not-registered; nobody received it")  # fmt: skip

    fixed = demo.ministry.signed_result(code, demo.pdf_keys.agency, name=RESULT_NAME)
    _check(fixed.url == forged.url, f"the re-signed result is at {fixed.url}, not {forged.url}")
    for dead_letter_id in ids:
        replay = demo.api("POST", f"/api/v1/dead-letters/{dead_letter_id}/replay", key=demo.operator_key)
        _check(replay.status_code == 202, f"replay #{dead_letter_id}: HTTP {replay.status_code} {replay.text[:200]}")
    wait_for(lambda: demo.trace(message_id)["status"] == "delivered", STEP_TIMEOUT_S,
             f"the replayed result of {code} to be delivered")  # fmt: skip
    demo.track(message_id)
    _check(_inbox_statuses(demo, code) == [9], f"province statuses for {code}: {_inbox_statuses(demo, code)}")
    _check(any("giải quyết xong" in m.subject for m in _mails(demo, code)), "no result email after the replay")
    demo.held_result_ids = ids
    step("the ministry re-signs the file at the same link with its registered key; the operator replays the dead "
         "letters → checked again → delivered to the province, the portal and the applicant")  # fmt: skip
    return f"{code}'s result signed by the wrong key held (result-signer-not-registered), re-signed, replayed"


FLOWS: list[Flow] = [
    Flow("F1", "online dossier → national portal", flow_f1),
    Flow("F2", "citizen lookup → population DB, audited", flow_f2),
    Flow("F3", "fee payment → CONFIRM → receipt → province and portal", flow_f3),
    Flow("F4", "VNPost orders → tracking → province; result delivered → 10 on the portal", flow_f4),
    Flow("F5", "land registration steps (VBDLIS) → province and portal", flow_f5),
    Flow("F6", "partner down / refusing → retry, dead letter, replay", flow_f6),
    Flow("F7", "life of a dossier: notifications, supplement and new due date, signed result, returned", flow_f7),
]


def run_flows(demo: DemoHub, flows: list[Flow] | None = None, *, step: Step | None = None,
              on_result: Callable[[FlowResult], None] | None = None) -> list[FlowResult]:  # fmt: skip
    """Run each flow in turn; a failed flow does not stop the others."""
    results = []
    for flow in FLOWS if flows is None else flows:
        lines: list[str] = []

        def report(text: str, _lines: list[str] = lines, _name: str = flow.name) -> None:
            _lines.append(text)
            if step is not None:
                step(f"{_name}: {text}")

        started = time.monotonic()
        try:
            summary = flow.run(demo, report)
            result = FlowResult(flow.name, flow.title, True, summary, time.monotonic() - started, lines)
        except FlowFailed as exc:
            result = FlowResult(flow.name, flow.title, False, str(exc), time.monotonic() - started, lines)
        except Exception as exc:  # a bug or an unreachable partner: the flow failed, say why
            log.exception("flow %s crashed", flow.name)
            result = FlowResult(flow.name, flow.title, False, f"{type(exc).__name__}: {exc}",
                                time.monotonic() - started, lines)  # fmt: skip
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def summary_json(results: list[FlowResult], lost: int) -> str:
    return json.dumps({"flows": {r.name: r.verdict for r in results}, "lost": lost}, ensure_ascii=False)


def _confirm_answer(confirm: dict[str, Any]) -> str:
    """A CONFIRM's answer as the payment simulator saw it: HTTP status, MaLoi, the rule of a refusal."""
    answer = confirm["answer"] if isinstance(confirm["answer"], dict) else {}
    rule = f" {confirm['rule']}" if confirm.get("rule") else ""
    return f"{confirm['status']} MaLoi {answer.get('MaLoi', '-')}{rule}"


def partner_rows(demo: DemoHub) -> list[tuple[str, str, str]]:
    """(partner, dossier, what it received) for the table ``hub demo`` prints."""
    rows: list[tuple[str, str, str]] = []
    portal = demo.portal.received()
    for code, record in sorted(portal["records"].items()):
        calls = [c for c in portal["calls"] if any(r.get("MaHoSo") == code for r in c["data"] or [])]
        sync = ", ".join(f"isUpdating={c['isUpdating']}→{c['error_code']}" for c in calls
                         if c["service"] == "DongBoHoSoMC")  # fmt: skip
        progress = [str(p["TrangThai"]) for p in portal["progress"].get(code, [])]
        text = f"TrangThaiHoSo {record['TrangThaiHoSo']}; DongBoHoSoMC {sync}"
        if progress:
            text += f"; CapNhatTienDoHoSoMC TrangThai {', '.join(progress)}"
        rows.append(("national portal", code, text))
    province = demo.province.received()
    by_code: dict[str, dict[str, list[str]]] = {}
    for m in sorted(province["messages"], key=lambda m: m["received_at"]):
        kind = m["message_type"]
        if kind == "dossier.status":
            what = str(_status_of(m["payload"]))
        elif kind == "postal.status":
            what = _postal_code_of(m["payload"])
        else:
            what = _packet_text(m["payload"], "reference") or "-"
            if kind == "payment.receipt":
                what += _receipt_check_of(m["payload"])
        mark = "" if m["verified"] else " (UNVERIFIED)"
        by_code.setdefault(m["dossier_code"] or "-", {}).setdefault(kind, []).append(what + mark)
    for code, kinds in sorted(by_code.items()):
        text = "; ".join(f"{kind} {', '.join(items)}" for kind, items in kinds.items())
        rows.append(("provincial system /inbox", code, f"{text} (hub-signed, verified)"))
    lookups = demo.population_db.received()["lookups"]
    if lookups:
        answers = ", ".join(f"{x['SoDinhDanh']}→{x['result']}" for x in lookups)
        rows.append(("population DB (SOAP)", "-", f"{len(lookups)} TraCuuThongTinCongDan: {answers}"))
    payment = demo.payment.received()
    for reference, p in sorted(payment["payments"].items()):
        confirms = [c for c in payment["confirms"] if c["MaThamChieu"] == reference]
        answers = ", ".join(_confirm_answer(c) for c in confirms)
        signer = p.get("receipt_signer") or demo.payment.receipt_signer
        signed = f" (e-receipt signed by {signer})" if p["paid"] else ""
        rows.append(("payment platform", p["MaHoSo"] or "-", f"INIT {reference} {p['SoTien']:,} VND; "
                     f"{'paid' if p['paid'] else 'unpaid'}{signed}; CONFIRM answered {answers or '-'}"))  # fmt: skip
    postal = demo.postal.received()
    for item_code, order in sorted(postal["orders"].items()):
        events = [str(e["StatusCode"]) for e in postal["events"] if e["ItemCode"] == item_code]
        rows.append(("postal service", order["OrderNumber"], f"VNPost order ItemCode {item_code} (CustomerCode "
                     f"{order['CustomerCode']}, COD {order.get('CODAmount', 0):,}); "
                     f"StatusCode {', '.join(events)}"))  # fmt: skip
    ministry = demo.ministry.received()
    pushed = ministry["pushed"]
    if pushed:
        answers = ", ".join(f"{p['transport']}→{p['status']}" for p in pushed)
        fetched = ministry["documents_fetched"]
        rows.append(("ministry (sent)", "-", f"{len(pushed)} pushes: {answers}; its result PDFs fetched "
                     f"{len(fetched)} times by the hub to check their signatures"))  # fmt: skip
    rows.extend(_notification_rows(demo))
    steps = demo.vbdlis.received()["pushed"]
    for code in sorted({p["body"].get("SoBienNhan") or "-" for p in steps}):
        answers = ", ".join(f"{p['action']}→Result {(p['answer'] or {}).get('Result')}" for p in steps
                            if (p["body"].get("SoBienNhan") or "-") == code)  # fmt: skip
        rows.append(("land registration VBDLIS (sent)", code, answers))
    return rows


def _notification_rows(demo: DemoHub) -> list[tuple[str, str, str]]:
    """What each applicant was told, per dossier: the emails' subjects and the number of SMS."""
    if demo.mail is None:
        return []
    subjects: dict[str, list[str]] = {}
    for mail in demo.mail.messages():
        code = str(mail.message["X-Lienthong-Dossier"] or "-")
        subjects.setdefault(code, []).append(mail.subject.split("] ", 1)[-1])
    texts = demo.sms.received()["messages"]
    rows = []
    for code, told in sorted(subjects.items()):
        sms = sum(1 for m in texts if code in m["text"])
        rows.append(("applicant (email over SMTP, SMS)", code, f"email: {'; '.join(told)}; SMS: {sms}"))
    return rows
