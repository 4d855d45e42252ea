"""Models of ``dossier.sync`` and ``dossier.status`` (``schemas/packets/dossier.*.xsd``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, NonNegativeInt

from hub.dossier.validators import AgencyCode, ApplicantType, Channel, DossierCode, PersonalId, Sha256Hex, StatusCode
from hub.packets.codec import XmlItem
from hub.packets.common import Code, Email, FeeLine, LongText, Name, PacketModel, Phone, Text, Url, UtcDateTime


class Applicant(PacketModel):
    """Who submitted the dossier; ``type`` is 1 citizen, 2 business, 3 agency, 4 other."""

    type: ApplicantType
    name: Name
    personal_id: PersonalId | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: Text | None = None


class Document(PacketModel):
    """A document of the dossier (thành phần hồ sơ) and the digest of its content."""

    component_code: Code
    name: Text
    url: Url
    sha256: Sha256Hex


class Result(PacketModel):
    """A result document issued for the dossier."""

    code: Code
    name: Text
    url: Url


class DossierSync(PacketModel):
    """``dossier.sync``: a dossier created or updated in the provincial system."""

    dossier_code: DossierCode
    procedure_code: Code
    procedure_name: Text
    field_code: Code | None = None
    receiving_unit: AgencyCode
    applicant: Applicant
    channel: Channel
    submitted_at: UtcDateTime
    received_at: UtcDateTime | None = None
    due_at: UtcDateTime | None = None
    finished_at: UtcDateTime | None = None
    returned_at: UtcDateTime | None = None
    status: StatusCode
    documents: Annotated[list[Document], XmlItem("document")] = Field(default_factory=list)
    fees: Annotated[list[FeeLine], XmlItem("fee")] = Field(default_factory=list)
    results: Annotated[list[Result], XmlItem("result")] = Field(default_factory=list)


class Step(PacketModel):
    """The processing step that produced a status update."""

    actor: Name
    title: Text | None = None
    department: Text | None = None
    content: LongText | None = None
    #: Who the dossier was handed to (VBDLIS ChuyenHoSo ``MaCanBoNhan``, PARTNER-FORMATS §5 TH-BR).
    handed_to: Name | None = None
    #: The partner's own state code for the step (VBDLIS ``MaTrangThai``), kept as sent.
    partner_state: Code | None = None
    #: The handover sends the dossier back (VBDLIS ``LaTrangThaiChuyenLai``).
    sent_back: bool | None = None


class Attachment(PacketModel):
    """A file attached to a processing step. VBDLIS file descriptors {TenGiayTo, KieuFile, LinkFile, SoBanSao,
    SoBanChinh} (PARTNER-FORMATS §5) carry no digest: ``sha256`` stays empty, the type and counts are kept."""

    name: Text
    url: Url
    sha256: Sha256Hex | None = None
    file_type: Text | None = None
    copies: NonNegativeInt | None = None
    originals: NonNegativeInt | None = None


class DossierStatusUpdate(PacketModel):
    """``dossier.status``: a processing step or status change (root element ``<dossierStatus>``)."""

    dossier_code: DossierCode
    status: StatusCode
    step: Step
    at: UtcDateTime
    step_due: UtcDateTime | None = None
    source_system: AgencyCode
    attachments: Annotated[list[Attachment], XmlItem("attachment")] = Field(default_factory=list)
    #: The partner's name of the step (VBDLIS action, e.g. ``ChuyenHoSo``), when the partner names its steps.
    partner_step: Code | None = None
    #: The processing time limit the step sets, as the partner wrote the number (VBDLIS ``HanXuLy``; unit unsourced).
    step_limit: Text | None = None
    #: The new appointment date after a supplement (VBDLIS ``NgayHenTraMoi``).
    new_due_at: UtcDateTime | None = None
    #: Processing is paused while the supplement is awaited (VBDLIS ``LaTamDung``).
    paused: bool | None = None
    #: How processing ended (VBDLIS ``TrangThaiKetThuc``: 0 with a result, else returned or withdrawn).
    finish_kind: NonNegativeInt | None = None
