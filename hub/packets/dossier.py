"""Models of ``dossier.sync`` and ``dossier.status`` (``schemas/packets/dossier.*.xsd``)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, NonNegativeInt, model_validator

from hub.dossier.validators import (
    AgencyCode,
    ApplicantType,
    Channel,
    DossierCode,
    OldId,
    PersonalId,
    Sha256Hex,
    StatusCode,
    check_portal_account_id,
    check_unit_name,
    ruled_after,
)
from hub.packets.codec import XmlItem
from hub.packets.common import (
    Code,
    Email,
    FeeLine,
    LongText,
    Name,
    PacketModel,
    Phone,
    Text,
    Url,
    UtcDateTime,
    rule_error,
)

#: A channel an applicant accepts notifications on (``Applicant.notify_channels``).
NotifyChannel = Literal["email", "sms"]

#: A reuse flag of the national portal's documents: 0, 1 or 2 (``DuocTaiSuDung``, TH-SI:76-87).
ReuseFlag = Annotated[int, Field(ge=0, le=2)]


#: How a dossier's fees were paid: 0 not stated, 1 paid online, 3 not paid online (``DuocThanhToanTrucTuyen``).
def _online_payment(value: int) -> int:
    if value not in (0, 1, 3):
        raise ValueError("online payment is 0 (not stated), 1 (paid online) or 3 (not paid online)")
    return value


OnlinePayment = Annotated[int, AfterValidator(_online_payment)]

#: Statuses that must say why: 3 not received (Ninh Thuận Điều 16.1.b: the refusal states its reason, Mẫu số 03
#: TT 01/2018/TT-VPCP) and 8 processing stopped (Đắk Nông Điều 12: a dossier not resolved is notified with the
#: reason). A withdrawal (7) may carry one too.
REASON_REQUIRED = frozenset({3, 8})
REASON_RULE = "status-reason-required"


#: The applicant's portal account (TechID, ``MaDoiTuong``): a code, never a 9- or 12-digit ID number (OC-DV:196-205).
PortalAccountId = Annotated[Code, ruled_after(check_portal_account_id)]
#: A processing unit's name (``DonViXuLy``, OC-DV:222), never its agency code.
UnitName = Annotated[Text, ruled_after(check_unit_name)]


class Applicant(PacketModel):
    """Who submitted the dossier; ``type`` is 1 citizen, 2 business, 3 agency, 4 other.

    ``portal_account_id`` is the applicant's account on the national portal (its TechID), never an ID number;
    ``old_id`` the 9-digit identity card number when there is no 12-digit personal ID. ``notify`` and
    ``notify_channels`` are the applicant's consent to the hub's notifications (``mappings.notification``)."""

    type: ApplicantType
    name: Name
    personal_id: PersonalId | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: Text | None = None
    old_id: OldId | None = None
    portal_account_id: PortalAccountId | None = None
    fax: Phone | None = None
    vneid_verified: bool | None = None
    #: The applicant's word on automatic notifications (Đắk Nông QĐ 04/2019 Điều 12.2): ``False`` declines them all;
    #: absent means notified, as the regulation makes them automatic.
    notify: bool | None = None
    #: The channels the applicant accepts (``email``, ``sms``); empty: every channel whose contact is given.
    notify_channels: Annotated[list[NotifyChannel], XmlItem("channel")] = Field(default_factory=list)


class Document(PacketModel):
    """A document of the dossier (thành phần hồ sơ) and the digest of its content."""

    component_code: Code
    name: Text
    url: Url
    sha256: Sha256Hex
    file_id: Code | None = None  # the provincial system's id of the file
    digitised: bool | None = None  # the document was digitised (số hóa)
    reuse: ReuseFlag | None = None  # may be reused (tái sử dụng), the portal's 0/1/2
    from_national_repository: bool | None = None  # taken from the national document repository (kho DMQG)
    replaces_result_code: Code | None = None  # the result document it stands in for


class Result(PacketModel):
    """A result document issued for the dossier."""

    code: Code
    name: Text
    url: Url
    component_code: Code | None = None  # the dossier component it answers
    document_id: Code | None = None  # the provincial system's id of the document


class DossierFee(FeeLine):
    """A fee of the dossier: ``kind`` 1 charge (phí) or 2 fee (lệ phí); ``collection`` how it is collected,
    as the province's code."""

    kind: Annotated[int, Field(ge=1, le=2)] | None = None
    collection: Code | None = None


class OtherPaper(PacketModel):
    """A paper handed in besides the dossier's components: its name, how many, of which type (a code number)."""

    name: Text
    count: Annotated[int, Field(ge=0)]
    paper_type: Annotated[int, Field(ge=0)]


class Supplement(PacketModel):
    """One request for more papers and how it was answered (hồ sơ bổ sung)."""

    supplement_id: Code
    requested_by: Name | None = None
    content: LongText | None = None
    requested_at: UtcDateTime | None = None
    received_by: Name | None = None
    receipt_info: LongText | None = None
    received_at: UtcDateTime | None = None
    status: Code | None = None
    previous_due_at: UtcDateTime | None = None
    new_due_at: UtcDateTime | None = None


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
    fees: Annotated[list[DossierFee], XmlItem("fee")] = Field(default_factory=list)
    results: Annotated[list[Result], XmlItem("result")] = Field(default_factory=list)
    # what the national portal's full record carries besides (all optional, added after the fields above)
    field_name: Text | None = None
    receiving_unit_name: UnitName | None = None
    summary: LongText | None = None
    note: LongText | None = None
    other_info: LongText | None = None
    return_info: LongText | None = None
    result_by_post: bool | None = None
    submission_place: Code | None = None
    rejected_at: UtcDateTime | None = None
    online_payment: OnlinePayment | None = None
    other_papers: Annotated[list[OtherPaper], XmlItem("otherPaper")] = Field(default_factory=list)
    supplements: Annotated[list[Supplement], XmlItem("supplement")] = Field(default_factory=list)
    #: Why the dossier was not received (3), withdrawn (7) or stopped (8); required for 3 and 8.
    status_reason: LongText | None = None

    @model_validator(mode="after")
    def _rejection_dated_and_explained(self) -> Self:
        if self.status == 3 and self.rejected_at is None:
            raise rule_error("rejected-at-required", "a dossier not received (status 3) needs rejectedAt "
                             "(the portal's NgayTuChoi)", "rejectedAt")  # fmt: skip
        if self.status in REASON_REQUIRED and not (self.status_reason or "").strip():
            raise rule_error(REASON_RULE, f"status {self.status} needs statusReason (why)", "statusReason")
        return self


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
    #: Why: the dossier was not received (3), withdrawn (7) or stopped (8) — required for 3 and 8 — or its
    #: status corrected. The update's ``at`` is the date it happened.
    reason: LongText | None = None
    #: For an operator's correction: the status it replaces (the dossier's status before it); ``reason`` says why.
    corrects: StatusCode | None = None

    @model_validator(mode="after")
    def _explained(self) -> Self:
        if (self.status in REASON_REQUIRED or self.corrects is not None) and not (self.reason or "").strip():
            what = "a correction" if self.corrects is not None else f"status {self.status}"
            raise rule_error(REASON_RULE, f"{what} needs a reason", "reason")
        return self
