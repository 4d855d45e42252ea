"""A realistic, valid sample of every packet type (synthetic IDs, Vietnamese names, times in UTC)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime

from pydantic import BaseModel

from hub.packets.citizen import Citizen, CitizenLookup, CitizenRecord, Gender, HouseholdHead, LookupResult
from hub.packets.common import Address, FeeLine, PostalParty
from hub.packets.dossier import (
    Applicant,
    Attachment,
    Document,
    DossierFee,
    DossierStatusUpdate,
    DossierSync,
    OtherPaper,
    Result,
    Step,
    Supplement,
)
from hub.packets.payment import Beneficiary, Payer, PaymentFee, PaymentReceipt, PaymentRequest, ReceiptVerification
from hub.packets.postal import Direction, PostalOrder, PostalState, PostalStatus
from hub.packets.registry import packet_type

DOSSIER_CODE = "000.00.00.H12-251123-0042"
AGENCY_CODE = "000.00.00.H12"
PROCEDURE_CODE = "1.009994"
PERSONAL_ID = "001099012345"
FILES = "https://dvc.lienthong.example.gov.vn/files"


def _utc(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


def _sha256(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


FEE_LINES = [
    FeeLine(code="LP-GPXD", name="Lệ phí cấp giấy phép xây dựng", amount=75_000),
    FeeLine(code="PHI-TD", name="Phí thẩm định hồ sơ", amount=500_000),
]


def dossier_sync() -> DossierSync:
    return DossierSync(
        dossier_code=DOSSIER_CODE,
        procedure_code=PROCEDURE_CODE,
        procedure_name="Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
        field_code="XAY-DUNG",
        receiving_unit=AGENCY_CODE,
        applicant=Applicant(
            type=1,
            name="Nguyễn Văn An",
            personal_id=PERSONAL_ID,
            phone="0912345678",
            email="nguyenvanan@example.vn",
            address="Số 12 đường Trần Phú, phường Hải Châu, thành phố Đà Nẵng",
            portal_account_id="a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607",
            vneid_verified=False,
        ),
        channel=2,
        submitted_at=_utc(23, 1, 15),
        received_at=_utc(23, 2, 30),
        due_at=_utc(8, 10, month=12),
        finished_at=_utc(5, 9, month=12),
        returned_at=_utc(6, 3, month=12),
        status=10,
        documents=[
            Document(
                component_code="GPXD-01",
                name="Đơn đề nghị cấp giấy phép xây dựng",
                url=f"{FILES}/{DOSSIER_CODE}/don-de-nghi.pdf",
                sha256=_sha256("don-de-nghi.pdf"),
                file_id="TEP-20251123-0001",
                digitised=True,
                reuse=1,
                from_national_repository=False,
            ),
            Document(
                component_code="GPXD-02",
                name="Bản vẽ thiết kế xây dựng",
                url=f"{FILES}/{DOSSIER_CODE}/ban-ve.pdf",
                sha256=_sha256("ban-ve.pdf"),
                file_id="TEP-20251123-0002",
                digitised=True,
                reuse=0,
                from_national_repository=False,
            ),
        ],
        fees=[
            DossierFee(**fee.model_dump(), kind=2 if fee.code.startswith("LP") else 1, collection="1")
            for fee in FEE_LINES
        ],
        results=[
            Result(
                code="KQ-GPXD",
                name="Giấy phép xây dựng số 123/GPXD",
                url=f"{FILES}/{DOSSIER_CODE}/giay-phep.pdf",
                component_code="GPXD-01",
                document_id="GT-20251205-0007",
            )
        ],
        field_name="Hoạt động xây dựng",
        receiving_unit_name="Ủy ban nhân dân quận Hải Châu",
        summary="Cấp giấy phép xây dựng nhà ở riêng lẻ tại số 12 đường Trần Phú",
        result_by_post=False,
        submission_place="2",
        online_payment=1,
        other_papers=[OtherPaper(name="Bản sao giấy chứng nhận quyền sử dụng đất", count=1, paper_type=1)],
        supplements=[
            Supplement(
                supplement_id="BS-20251125-0001",
                requested_by="Trần Thị Bình",
                content="Bổ sung bản vẽ mặt cắt công trình",
                requested_at=_utc(25, 2),
                received_by="Lê Văn Cường",
                receipt_info="Đã nhận bản vẽ mặt cắt bổ sung",
                received_at=_utc(27, 3),
                status="2",
                previous_due_at=_utc(5, 10, month=12),
                new_due_at=_utc(8, 10, month=12),
            )
        ],
    )


def dossier_status() -> DossierStatusUpdate:
    return DossierStatusUpdate(
        dossier_code=DOSSIER_CODE,
        status=4,
        step=Step(
            actor="Trần Thị Bình",
            title="Chuyên viên",
            department="Phòng Quản lý đô thị",
            content="Chuyển hồ sơ sang bước thẩm định thiết kế",
        ),
        at=_utc(24, 3, 5),
        step_due=_utc(28, 10),
        source_system="000.00.00.G10",
        attachments=[
            Attachment(
                name="Phiếu luân chuyển hồ sơ",
                url=f"{FILES}/{DOSSIER_CODE}/phieu-luan-chuyen.pdf",
                sha256=_sha256("phieu-luan-chuyen.pdf"),
            )
        ],
    )


def citizen_lookup() -> CitizenLookup:
    return CitizenLookup(
        request_id="TC-20251123-000117",
        procedure_code=PROCEDURE_CODE,
        officer_id="CB-H12-0031",
        dossier_code=DOSSIER_CODE,
        purpose="Xác minh thông tin công dân khi tiếp nhận hồ sơ cấp giấy phép xây dựng",
        personal_id=PERSONAL_ID,
        full_name="Nguyễn Văn An",
        birth_date=date(1999, 4, 17),
    )


def citizen_record() -> CitizenRecord:
    home = Address(province_code="48", district_code="492", ward_code="20194", detail="Số 12 đường Trần Phú")
    return CitizenRecord(
        request_id="TC-20251123-000117",
        result=LookupResult.FOUND,
        citizen=Citizen(
            personal_id=PERSONAL_ID,
            family_name="Nguyễn",
            middle_name="Văn",
            given_name="An",
            gender=Gender.MALE,
            birth_date=date(1999, 4, 17),
            hometown=Address(province_code="01", district_code="017", detail="Xã Vân Hà, huyện Đông Anh"),
            permanent_address=home,
            current_address=home,
            household_head=HouseholdHead(full_name="Nguyễn Văn Bình", personal_id="001065004321", relationship="Con"),
        ),
    )


def payment_request() -> PaymentRequest:
    return PaymentRequest(
        reference="PAY-H12-251123-000042",
        dossier_code=DOSSIER_CODE,
        procedure_code=PROCEDURE_CODE,
        agency_code=AGENCY_CODE,
        payer=Payer(
            name="Nguyễn Văn An",
            personal_id=PERSONAL_ID,
            phone="0912345678",
            address="Số 12 đường Trần Phú, phường Hải Châu",
            district="Quận Hải Châu",
            province="Thành phố Đà Nẵng",
        ),
        amount=575_000,
        fee_lines=[PaymentFee(**line.model_dump(), kind=kind) for line, kind in zip(FEE_LINES, (2, 1), strict=True)],
        description=f"Nộp phí, lệ phí hồ sơ {DOSSIER_CODE}",
        procedure_name="Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
        agency_name="Sở Xây dựng (demo)",
        beneficiary=Beneficiary(account="7111-0001234", bank_code="KBNN", account_name="Sở Xây dựng (demo)"),
    )


def payment_receipt() -> PaymentReceipt:
    # the GET_BILL e-receipt (a PDF, TH-PS:62-79) signed by the intermediary, abridged here to its first line
    receipt = b"%PDF-1.7\n% bien lai dien tu PAY-H12-251123-000042, ky boi payment-intermediary (abridged)\n%%EOF\n"
    return PaymentReceipt(
        reference="PAY-H12-251123-000042",
        dossier_code=DOSSIER_CODE,
        bank_transaction_id="FT25327091234567",
        bank_code="VCB",
        amount=575_000,
        paid_at=_utc(24, 2, 47),
        result_code="00",
        signed_receipt=receipt,
        verification=ReceiptVerification(
            format="pdf",
            sha256=hashlib.sha256(receipt).hexdigest(),
            size=len(receipt),
            required=True,
            valid=True,
            signer="000.00.00.G05",
            signatures=1,
            signer_subject="CN=payment-intermediary,O=Lienthong demo CA",
            signer_name="payment-intermediary",
            signer_fingerprint=_sha256("payment-intermediary certificate"),
            trusted_as="pinned for sender",
            signing_time=_utc(24, 2, 48),
            covers_whole_document=True,
            modification="NONE",
            checked_at=_utc(24, 2, 49),
            validator="pyHanko 0.29",
        ),
    )


def postal_order() -> PostalOrder:
    return PostalOrder(
        dossier_code=DOSSIER_CODE,
        direction=Direction.DELIVERY,
        sender=PostalParty(
            name="Bộ phận Một cửa UBND thành phố",
            address="24 Trần Phú, phường Hải Châu",
            phone="02363821234",
            province_code="48",
            district_code="492",
            email="motcua@danang.gov.vn",
        ),
        receiver=PostalParty(
            name="Nguyễn Văn An",
            address="Số 12 đường Trần Phú, phường Hải Châu",
            phone="0912345678",
            province_code="48",
            district_code="492",
            email="nguyenvanan@example.vn",
        ),
        cod_amount=75_000,
        description="Chuyển trả kết quả: Giấy phép xây dựng số 123/GPXD",
        item_code="EL123456789VN",
        contents="Giấy phép xây dựng (01 bản chính)",
    )


def postal_status() -> PostalStatus:
    return PostalStatus(
        dossier_code=DOSSIER_CODE,
        order_number="EL123456789VN",
        status_code="4",
        message="Đã phát thành công cho người nhận",
        at=_utc(6, 3),
        state=PostalState.DELIVERED,
        direction=Direction.DELIVERY,
        cod_amount=75_000,
        post_office="550000",
        notes="Người nhận ký nhận",
    )


_EXAMPLES: dict[str, Callable[[], BaseModel]] = {
    "dossier.sync": dossier_sync,
    "dossier.status": dossier_status,
    "citizen.lookup": citizen_lookup,
    "citizen.record": citizen_record,
    "payment.request": payment_request,
    "payment.receipt": payment_receipt,
    "postal.order": postal_order,
    "postal.status": postal_status,
}


def example(type_name: str) -> BaseModel:
    """A realistic valid ``type_name`` packet; raises ``UnknownMessageTypeError`` for unknown types."""
    packet_type(type_name)
    return _EXAMPLES[type_name]()
