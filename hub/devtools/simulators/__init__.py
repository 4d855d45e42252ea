"""Partner simulators: real HTTP servers on 127.0.0.1 that speak each partner's protocol, remember what they
received (``GET /_received``) and can be told to fail (``POST /_control``, see ``hub.devtools.simulators.base``).

``hub simulate`` starts them on ``DEFAULT_PORTS``; tests start them on free ports (``port=0``) in a thread::

    with NationalPortalSimulator(variant="dvcqg/opencps", dstcode="…") as portal:
        ...  # portal.adapter_url, portal.login_url, portal.integration_url, portal.share_url

The national portal, the population database (through its LGSP or directly), the payment platform (and PayGov via
LGSP, ``paygov_lgsp.PayGovLgspSimulator``, started on its own) and the VBDLIS ministry software speak the formats of
``../shared/PARTNER-FORMATS.md`` (§1, §2, §3, §5) strictly: a message lacking a sourced field, or of the wrong type,
a request with a header or element order the sources never send, is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.devtools.simulators.base import FAILURE_MODES, SimulatorServer
from hub.devtools.simulators.envelopes import EnvelopeInbox, SendResult, send, send_soap, signed_envelope
from hub.devtools.simulators.ministry import MinistrySimulator, MinistryStep, ResultDocument
from hub.devtools.simulators.national_portal import NationalPortalSimulator
from hub.devtools.simulators.payment import PaymentSimulator
from hub.devtools.simulators.population_db import PopulationDbSimulator
from hub.devtools.simulators.postal import PostalSimulator
from hub.devtools.simulators.provincial import ProvincialSimulator
from hub.devtools.simulators.sms_gateway import SmsGatewaySimulator
from hub.devtools.simulators.vbdlis import StepRefusedError, StepResult, VbdlisSimulator

#: Fixed ports of ``hub simulate`` / ``hub demo`` (the other partner kinds take the ports listed for them).
DEFAULT_PORTS: dict[str, int] = {
    "provincial": 9001,
    "national_portal": 9002,
    "population_db": 9003,
    "postal": 9004,
    "payment": 9005,
    "ministry": 9006,
    "ministry_vbdlis": 9007,
    "sms_gateway": 9008,
    "mail": 9025,  # not an HTTP simulator: the demo's SMTP server (hub.devtools.mail_server), started by the demo
}

#: The simulators that exist today, by connector kind (``ministry``: the XML steps, ``ministry/xml-steps``;
#: ``ministry_vbdlis``: VBDLIS's JSON, ``ministry/vbdlis-json``; ``sms_gateway``: a notification connector's SMS
#: gateway, ``notification/sms-http``).
SIMULATORS: dict[str, type[SimulatorServer]] = {
    "provincial": ProvincialSimulator,
    "national_portal": NationalPortalSimulator,
    "ministry": MinistrySimulator,
    "ministry_vbdlis": VbdlisSimulator,
    "population_db": PopulationDbSimulator,
    "postal": PostalSimulator,
    "payment": PaymentSimulator,
    "sms_gateway": SmsGatewaySimulator,
}


def start_all(
    ports: dict[str, int] | None = None,
    *,
    trust: Path | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, SimulatorServer]:
    """Start every simulator in a daemon thread (``ports``: kind → port, 0 = any free port; default
    ``DEFAULT_PORTS``); envelope partners verify the hub's signature against ``trust`` when given; ``options``:
    kind → constructor keywords (``{"national_portal": {"variant": "dvcqg/proxy"}}``)."""
    ports = DEFAULT_PORTS if ports is None else ports  # "mail" is not started here (hub.devtools.mail_server)
    options = options or {}
    started: dict[str, SimulatorServer] = {}
    try:
        for kind, cls in SIMULATORS.items():
            port = ports.get(kind, DEFAULT_PORTS[kind])
            extra = dict(options.get(kind, {}))
            if issubclass(cls, EnvelopeInbox):
                extra["trust"] = trust
            sim = cls(port, **extra)
            started[kind] = sim.start()
    except BaseException:
        stop_all(started)
        raise
    return started


def stop_all(simulators: dict[str, SimulatorServer]) -> None:
    for sim in simulators.values():
        sim.stop()


@contextmanager
def running(
    ports: dict[str, int] | None = None,
    *,
    trust: Path | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> Iterator[dict[str, SimulatorServer]]:
    """``start_all`` as a context manager."""
    simulators = start_all(ports, trust=trust, options=options)
    try:
        yield simulators
    finally:
        stop_all(simulators)


__all__ = [
    "DEFAULT_PORTS",
    "FAILURE_MODES",
    "SIMULATORS",
    "EnvelopeInbox",
    "MinistrySimulator",
    "MinistryStep",
    "NationalPortalSimulator",
    "PaymentSimulator",
    "PopulationDbSimulator",
    "PostalSimulator",
    "ProvincialSimulator",
    "ResultDocument",
    "SendResult",
    "SimulatorServer",
    "SmsGatewaySimulator",
    "StepRefusedError",
    "StepResult",
    "VbdlisSimulator",
    "running",
    "send",
    "send_soap",
    "signed_envelope",
    "start_all",
    "stop_all",
]
