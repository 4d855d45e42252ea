"""An operator's correction of a dossier's status, for the API, the operator page and the CLI alike.

Nothing may follow a terminal status (3, 7, 10), nor may a dossier go back from 9, except through this audited
correction (``hub.dossier.status_machine.Correction``). It is reported like any status change: the hub injects a
``dossier.status`` (sender: the hub) carrying the new status, the operator as the step's actor, the reason and the
status it replaces (``corrects``); the acceptor decides it as a correction and, in the transaction that stores that
message and queues it for every connector that receives ``dossier.status`` (the province, the national portal), puts
it on the dossier's timeline (who, why, before, after) and writes the audit row ``dossier.correct``. With nobody
routed to receive it, the correction is recorded and audited all the same (``Store.record_status``), reported to no one.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from hub.dossier.status_machine import Correction, DossierStatus
from hub.errors import CorrectionRefusedError, Issue, NoRouteError
from hub.packets.dossier import DossierStatusUpdate, Step
from hub.runtime import Runtime
from hub.security.envelope import EnvelopeHeader
from hub.services.actions import Actor

log = logging.getLogger(__name__)

MAX_REASON = 2000
#: What an XML 1.0 document can carry (its ``Char`` production): the reason travels in the hub's signed
#: ``dossier.status``, and lxml refuses any other character. Both regex engines (Python's, pydantic's) read it.
#: Written as the characters it leaves out (the same set of Unicode scalar values; surrogates, which pydantic's
#: Rust engine cannot name, are refused by ``_NOT_XML``): a generator of valid examples (schemathesis via
#: hypothesis) takes seconds to build one from the million-character class the ``Char`` production lists.
XML_TEXT = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]*$"
_NOT_XML = re.compile(r"[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
REASON_CHARACTERS = "reason-characters"
#: The step's title on the timeline, the province's inbox and the portal's progress record (partners read Vietnamese).
STEP_TITLE = "Điều chỉnh trạng thái hồ sơ"


@dataclass(frozen=True, slots=True)
class CorrectionDone:
    """What a correction did: the dossier's status before and after, who and why, the message that reports it
    (``None`` when nobody receives ``dossier.status``) and the connectors it is queued for."""

    dossier_code: str
    status_before: int
    status: int
    reason: str
    corrected_by: str
    at: datetime
    message_id: str | None
    destinations: tuple[str, ...]


def _refused(message: str, path: str, rule: str) -> CorrectionRefusedError:
    return CorrectionRefusedError(message, [Issue(path, rule, message)])


def _checked_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise _refused("a correction needs a reason", "/reason", "reason-required")
    bad = _NOT_XML.search(text)
    if bad is not None:
        raise _refused(f"the reason holds the control character U+{ord(bad.group()):04X}, which a dossier.status "
                       "(XML) cannot carry: remove it", "/reason", REASON_CHARACTERS)  # fmt: skip
    if len(text) > MAX_REASON:
        raise _refused(f"the reason is longer than {MAX_REASON} characters", "/reason", "reason-required")
    return text


def correct_status(runtime: Runtime, dossier_code: str, *, status: int, reason: str, actor: Actor) -> CorrectionDone:
    """Set a dossier's status to ``status`` (1..10) for ``reason``, as ``actor`` (an operator or administrator: the
    callers check the role). Raises ``CorrectionRefusedError``: the dossier has no applied status
    (``dossier-unknown``), has this status already (``correction-unchanged``), the reason is blank
    (``reason-required``) or holds a character XML cannot carry (``reason-characters``), or the status is not a code
    (``status-code``). A correction is never stale: applied after the dossier's last update, even one dated ahead
    (``hub.dossier.status_machine``); ``correction-stale`` remains only as a guard."""
    text = _checked_reason(reason)
    if isinstance(status, bool) or not isinstance(status, int) or status not in {s.value for s in DossierStatus}:
        raise _refused(f"status {status!r} is not a dossier status code 1..10", "/status", "status-code")
    record = runtime.store.dossier(dossier_code)
    if record is None:
        raise _refused(f"no status was ever applied to dossier {dossier_code}", "/code", "dossier-unknown")
    if record.status == status:
        raise _refused(f"dossier {dossier_code} is at status {status} already", "/status", "correction-unchanged")
    hub_code = runtime.settings.hub_code
    at = datetime.now(UTC).replace(microsecond=0)
    correction = Correction(reason=text, corrected_by=actor.name, role=actor.role, client=actor.client)
    update = DossierStatusUpdate(
        dossier_code=dossier_code,
        status=status,
        step=Step(actor=actor.name[:200], title=STEP_TITLE, content=f"{STEP_TITLE}: {record.status} → {status}"),
        at=at,
        source_system=hub_code,
        reason=text,
        corrects=record.status,
    )
    header = EnvelopeHeader(message_id=str(uuid.uuid4()), sender=hub_code, receiver=hub_code,
                            message_type="dossier.status", dossier_code=dossier_code, created_at=at)  # fmt: skip
    done = CorrectionDone(dossier_code, record.status, status, text, actor.name, at, header.message_id, ())
    try:
        accepted = runtime.inject(header, update, correction=correction)
    except NoRouteError:  # nobody receives dossier.status: recorded and audited, reported to no one
        log.warning("correction of %s: no connector receives dossier.status; recorded only", dossier_code)
        decision = runtime.store.record_status(dossier_code=dossier_code, status=status, at=at, message_id=None,
                                               source=hub_code, correction=correction)  # fmt: skip
        outcome, done = str(decision.outcome), replace(done, message_id=None)
    else:
        outcome, done = str(accepted.status_update), replace(done, destinations=accepted.destinations)
    if outcome != "corrected":
        raise CorrectionRefusedError(
            f"the correction of {dossier_code} was recorded but not applied: the dossier's last update is later "
            "than now (a partner's clock ahead?)",
            [Issue("/status", "correction-stale", f"outcome {outcome}")],
            message_id=done.message_id,
        )
    log.info("dossier %s corrected %s -> %s by %s", dossier_code, done.status_before, status, actor.name)
    return done

