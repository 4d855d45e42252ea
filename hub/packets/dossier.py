"""Models of ``dossier.sync`` and ``dossier.status`` (``schemas/packets/dossier.*.xsd``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

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


class Attachment(PacketModel):
    """A file attached to a processing step."""

    name: Text
    url: Url
    sha256: Sha256Hex | None = None


class DossierStatusUpdate(PacketModel):
    """``dossier.status``: a processing step or status change (root element ``<dossierStatus>``)."""

    dossier_code: DossierCode
    status: StatusCode
    step: Step
    at: UtcDateTime
    step_due: UtcDateTime | None = None
    source_system: AgencyCode
    attachments: Annotated[list[Attachment], XmlItem("attachment")] = Field(default_factory=list)
