"""Models of ``payment.request`` and ``payment.receipt`` (``schemas/packets/payment.*.xsd``)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, NonNegativeInt, field_validator, model_validator

from hub.dossier.validators import AgencyCode, DossierCode, PersonalId, Sha256Hex, VndAmount
from hub.packets.codec import XmlItem
from hub.packets.common import (
    Base64Binary,
    Code,
    FeeLine,
    LongText,
    Name,
    PacketModel,
    Phone,
    ResultCode,
    Text,
    UtcDateTime,
    rule_error,
)


class Payer(PacketModel):
    """Who pays: HoTenNguoiNop, SoCMNDNguoiNop, DiaChiNguoiNop, HuyenNguoiNop, TinhNguoiNop of the platform's receipt
    information (PARTNER-FORMATS §3, OC-PI:1579-1595; the district and province as names, as OC sends them)."""

    name: Name
    personal_id: PersonalId | None = None
    phone: Phone | None = None
    address: Text | None = None
    district: Name | None = None
    province: Name | None = None


class Beneficiary(PacketModel):
    """The account the fees are paid into: TKThuHuong, MaNHThuHuong, TenTKThuHuong (OC-PI:1527-1539)."""

    account: Code
    bank_code: Code
    account_name: Name


class PaymentFee(FeeLine):
    """A fee line of a payment: ``kind`` 1 charge (phí) or 2 fee (lệ phí), the platform's ``LoaiPhiLePhi``
    (OC-PT:103-104); absent, the connector's profile says which."""

    kind: Annotated[int, Field(ge=1, le=2)] | None = None


PaymentKind = Literal["payment", "refund"]


class PaymentRequest(PacketModel):
    """``payment.request``: a fee request for a dossier; ``amount`` equals the sum of ``fee_lines``.

    ``kind`` ``refund`` (Tiền Giang Điều 17.4, a dossier the agency could not handle) asks the platform to return
    ``amount`` of the paid request ``original_reference`` (required then, absent for a payment); ``reference`` is
    the refund's own reference and ``fee_lines`` the lines refunded, ``description`` the reason.

    The names the payment platform puts on its receipt (TenTTHC, TenDonVi, MaDVC/TenDVC, the beneficiary account:
    PARTNER-FORMATS §3, OC-PI:1466-1598, TH-PI:40-100) come from the request when it gives them, else from the
    payment connector's profile values.
    """

    reference: Code
    dossier_code: DossierCode
    procedure_code: Code
    agency_code: AgencyCode
    payer: Payer
    amount: VndAmount
    currency: Literal["VND"] = "VND"
    fee_lines: Annotated[list[PaymentFee], XmlItem("feeLine"), Field(min_length=1)]
    description: LongText | None = None
    kind: PaymentKind = "payment"
    original_reference: Code | None = None
    procedure_name: Text | None = None
    agency_name: Name | None = None
    service_code: Code | None = None
    service_name: Text | None = None
    beneficiary: Beneficiary | None = None

    @field_validator("fee_lines", mode="before")
    @classmethod
    def _plain_fee_lines(cls, value: object) -> object:
        """A plain ``FeeLine`` (no kind) is a fee line of a payment too."""
        if isinstance(value, list):
            return [v.model_dump() if isinstance(v, FeeLine) and not isinstance(v, PaymentFee) else v for v in value]
        return value

    @model_validator(mode="after")
    def _amount_is_sum(self) -> Self:
        if (self.kind == "refund") != (self.original_reference is not None):
            raise rule_error(
                "refund-original-reference",
                "a refund names the paid original_reference it returns money from; a payment names none",
                "original_reference",
            )
        if self.original_reference == self.reference:
            raise rule_error(
                "refund-original-reference", "a refund has its own reference, not the original's", "reference"
            )
        total = sum(line.amount for line in self.fee_lines)
        if self.amount != total:
            raise rule_error(
                "amount-equals-fee-lines",
                f"amount {self.amount} VND is not the sum of the fee lines ({total} VND)",
                "amount",
            )
        return self


SignedReceipt = Annotated[Base64Binary, Field(min_length=1)]
DocumentFormat = Literal["pdf", "xml", "json", "unknown"]


class ReceiptVerification(PacketModel):
    """What the hub proved about the receipt document before it sent the receipt on (the receipt rule: the
    province proceeds only on a receipt signed by the bank / intermediary, Quảng Nam Điều 14.3, Tiền Giang Điều
    17.5, Ninh Thuận Điều 18.2): ``hub.security.signed_documents.DocumentSignature`` as checked by ``validator``.

    ``required``: the payment connector's profile says its receipts are signed (``receipt_signed``); then only a
    ``valid`` one is ever sent. Otherwise ``valid`` may be false with ``rule`` ``receipt-unsigned`` (a receipt
    with no signature, forwarded as the profile allows). ``signer`` is the payment connector whose registered
    ``receipt_signers`` were the only certificates accepted; the signer fields describe the signature found."""

    format: DocumentFormat
    sha256: Sha256Hex
    size: NonNegativeInt
    required: bool
    valid: bool
    signer: Code
    rule: Code | None = None
    reason: LongText | None = None
    signatures: NonNegativeInt = 0
    signer_subject: LongText | None = None
    signer_name: Name | None = None
    signer_fingerprint: Sha256Hex | None = None
    trusted_as: Text | None = None
    signing_time: UtcDateTime | None = None
    timestamped: bool = False
    covers_whole_document: bool = False
    modification: Code | None = None
    checked_at: UtcDateTime
    validator: Name


class PaymentReceipt(PacketModel):
    """``payment.receipt``: the bank's confirmation; ``signed_receipt`` is the receipt document's bytes as the
    platform sent them (the e-receipt PDF of ``GET_BILL``) and ``verification`` what the hub proved about its
    signature (always given for a payment's receipt since the receipt rule; absent in older packets).

    For a refund ``kind`` is ``refund``, ``original_reference`` the paid request refunded and ``paid_at`` the time
    the money went back."""

    reference: Code
    dossier_code: DossierCode
    bank_transaction_id: Code
    bank_code: Code
    amount: VndAmount
    paid_at: UtcDateTime
    result_code: ResultCode
    signed_receipt: SignedReceipt
    kind: PaymentKind = "payment"
    original_reference: Code | None = None
    verification: ReceiptVerification | None = None
