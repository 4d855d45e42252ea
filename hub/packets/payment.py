"""Models of ``payment.request`` and ``payment.receipt`` (``schemas/packets/payment.*.xsd``)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

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
    UtcDateTime,
    rule_error,
)
from hub.validators import AgencyCode, DossierCode, PersonalId, VndAmount


class Payer(PacketModel):
    """Who pays (HoTenNguoiNop)."""

    name: Name
    personal_id: PersonalId | None = None
    phone: Phone | None = None


class PaymentRequest(PacketModel):
    """``payment.request``: a fee request for a dossier; ``amount`` equals the sum of ``fee_lines``."""

    reference: Code
    dossier_code: DossierCode
    procedure_code: Code
    agency_code: AgencyCode
    payer: Payer
    amount: VndAmount
    currency: Literal["VND"] = "VND"
    fee_lines: Annotated[list[FeeLine], XmlItem("feeLine"), Field(min_length=1)]
    description: LongText | None = None

    @model_validator(mode="after")
    def _amount_is_sum(self) -> Self:
        total = sum(line.amount for line in self.fee_lines)
        if self.amount != total:
            raise rule_error(
                "amount-equals-fee-lines",
                f"amount {self.amount} VND is not the sum of the fee lines ({total} VND)",
                "amount",
            )
        return self


SignedReceipt = Annotated[Base64Binary, Field(min_length=1)]


class PaymentReceipt(PacketModel):
    """``payment.receipt``: the bank's confirmation; ``signed_receipt`` is the bank-signed document's bytes."""

    reference: Code
    dossier_code: DossierCode
    bank_transaction_id: Code
    bank_code: Code
    amount: VndAmount
    paid_at: UtcDateTime
    result_code: ResultCode
    signed_receipt: SignedReceipt
