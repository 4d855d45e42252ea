"""Rejection (3), withdrawal (7) and stop (8) as first-class updates: the canonical packets refuse them without
their reason (and a rejection without its date), and the national portal's records carry them in the sourced
fields — the progress record's ``NoiDungXuLy``/``ThoiDiemXuLy`` (OC-DV:507-524), the sync record's ``NgayTuChoi``
(TH-SS:123-124) — and the reason of a synced dossier where the unsourced profile value ``status_reason_field`` says.
VBDLIS's ``KetThucHoSo`` without a result (``TrangThaiKetThuc`` ≠ 0, §5) sets the profile value ``ended_status``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lxml import etree

from adapters.base import OutboundRequest
from adapters.dvcqg import DvcqgProxyAdapter
from hub import packets
from hub.errors import PacketInvalidError
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.security.envelope import EnvelopeHeader, build_envelope
from mappings import dvcqg, outbound_mapping, profiles, vbdlis
from mappings.profiles import ProfileValueError

AT = datetime(2025, 11, 23, 3, 0, tzinfo=UTC)  # 10:00 in Asia/Ho_Chi_Minh
REASON = "Hồ sơ thiếu bản vẽ thiết kế (Mẫu số 03)"


def status(**changes: Any) -> DossierStatusUpdate:
    """The example dossier.status with ``changes``, not validated (``model_copy``): what a sender might send."""
    return packets.example("dossier.status").model_copy(update=changes)


def sync(**changes: Any) -> DossierSync:
    return packets.example("dossier.sync").model_copy(update=changes)


def rules(model: DossierStatusUpdate | DossierSync) -> list[str]:
    """The rules the packet breaks as the hub decodes it from XML ([] = accepted)."""
    name = packets.packet_type_for_model(model).name
    issues, decoded = packets.decode_element(name, packets.to_element(model))
    return [i.rule for i in issues] if decoded is None else []


@pytest.mark.parametrize("code", [3, 8])
def test_a_status_that_must_say_why_is_refused_without_a_reason(code: int) -> None:
    assert rules(status(status=code)) == ["status-reason-required"]
    assert rules(status(status=code, reason="  ")) == ["status-reason-required"]
    assert rules(status(status=code, reason=REASON)) == []


def test_a_withdrawal_may_say_why_and_a_correction_must() -> None:
    assert rules(status(status=7)) == []
    assert rules(status(status=7, reason="Công dân xin rút")) == []
    assert rules(status(status=4, corrects=10)) == ["status-reason-required"]
    assert rules(status(status=4, corrects=10, reason="trả kết quả nhầm")) == []


def test_a_synced_rejection_needs_its_date_and_its_reason() -> None:
    base = {"finished_at": None, "returned_at": None}
    assert rules(sync(status=3, **base)) == ["rejected-at-required"]
    assert rules(sync(status=3, rejected_at=AT, **base)) == ["status-reason-required"]
    assert rules(sync(status=3, rejected_at=AT, status_reason=REASON, **base)) == []
    assert rules(sync(status=8, **base)) == ["status-reason-required"]
    assert rules(sync(status=7, **base)) == []


def test_the_progress_record_carries_the_reason_after_the_content_and_the_date() -> None:
    update = DossierStatusUpdate.model_validate(
        status(status=8, reason="Dừng xử lý theo yêu cầu của cơ quan thuế", at=AT).model_dump()
    )
    record = dvcqg.progress_record(update)
    assert record["TrangThai"] == "8" and record["ThoiDiemXuLy"] == "20251123100000"
    assert record["NoiDungXuLy"] == f"{update.step.content} — Dừng xử lý theo yêu cầu của cơ quan thuế"
    assert set(record) == set(dvcqg.PROGRESS_FIELDS)  # exactly the sourced fields, no invented one
    assert dvcqg.validate_record(dvcqg.SERVICE_PROGRESS, record) == []
    bare = update.model_copy(update={"step": update.step.model_copy(update={"content": None})})
    assert dvcqg.progress_record(bare)["NoiDungXuLy"] == "Dừng xử lý theo yêu cầu của cơ quan thuế"


def test_the_sync_record_carries_the_rejection_date_and_hands_the_reason_to_the_adapter() -> None:
    rejected = DossierSync.model_validate(
        sync(status=3, rejected_at=AT, status_reason=REASON, finished_at=None, returned_at=None).model_dump()
    )
    call = dvcqg.to_dvcqg(rejected)
    assert (call.record["TrangThaiHoSo"], call.record["NgayTuChoi"]) == ("3", "20251123100000")
    assert call.status_reason == REASON and REASON not in str(call.record)  # placed by the adapter (profile)


PROXY = {"insert_url": "/insert", "update_url": "/update", "progress_url": "/progress"}


def placed(values: dict[str, str], model: DossierSync) -> dict[str, Any]:
    """The record the ``dvcqg/proxy`` adapter would send for ``model`` (without sending it)."""
    adapter = DvcqgProxyAdapter("http://127.0.0.1:9", profiles.resolve(profiles.get_profile("dvcqg/proxy"),
                                                                      PROXY | values))  # fmt: skip
    header = EnvelopeHeader(sender="000.00.00.H00", receiver="000.00.00.G22", message_type="dossier.sync")
    mapping = outbound_mapping(dvcqg.KIND, "dossier.sync")
    assert mapping is not None
    request = OutboundRequest("000.00.00.G22", header.message_id, "dossier.sync",
                              etree.tostring(build_envelope(header, packets.to_element(model))),
                              payload=mapping.to_partner(model), model=model)  # fmt: skip
    try:
        ((_, _, record),) = adapter._unpacked(request)  # one call: a sync
        return record
    finally:
        adapter.close()


def test_the_adapter_puts_the_reason_where_the_profile_says() -> None:
    withdrawn = DossierSync.model_validate(sync(status=7, status_reason="Công dân xin rút hồ sơ", note="Nộp trực tuyến",
                                                finished_at=None, returned_at=None).model_dump())  # fmt: skip
    assert placed({}, withdrawn)["GhiChu"] == "Nộp trực tuyến — Công dân xin rút hồ sơ"  # the default, GhiChu
    other = placed({"status_reason_field": "ThongTinKhac"}, withdrawn)
    assert other["GhiChu"] == "Nộp trực tuyến" and other["ThongTinKhac"].endswith("Công dân xin rút hồ sơ")
    assert "Công dân xin rút hồ sơ" not in str(placed({"status_reason_field": ""}, withdrawn))  # not sent
    with pytest.raises(ProfileValueError):
        placed({"status_reason_field": "TrangThaiHoSo"}, withdrawn)


def vbdlis_settings(**values: str) -> vbdlis.StepSettings:
    return vbdlis.StepSettings.from_profile(profiles.resolve(profiles.get_profile(vbdlis.PROFILE), values))


END = {"SoBienNhan": "000.00.00.H12-251123-0042", "NgayKetThuc": "2025-11-28T16:00:00", "MaCanBoXuLy": "cb.tnmt.07",
       "TrangThaiKetThuc": 2}  # fmt: skip


def test_a_vbdlis_stop_without_a_note_is_refused_naming_ghichu() -> None:
    with pytest.raises(PacketInvalidError) as refused:
        vbdlis.map_step("KetThucHoSo", END, unit="000.00.00.G10", received_at=AT, current=4,
                        settings=vbdlis_settings(ended_status="8"))  # fmt: skip
    assert [(i.path, i.rule) for i in refused.value.issues] == [("/GhiChu", "status-reason-required")]
    with_result = vbdlis.map_step("KetThucHoSo", {**END, "TrangThaiKetThuc": 0}, unit="000.00.00.G10",
                                  received_at=AT, current=4, settings=vbdlis_settings(ended_status="8"))  # fmt: skip
    assert (with_result.update.status, with_result.update.reason) == (9, None)  # a result: done, as TH sets it


@pytest.mark.parametrize("bad", ["4", "10", "x"])
def test_ended_status_is_one_of_7_8_9(bad: str) -> None:
    with pytest.raises(ProfileValueError):
        vbdlis_settings(ended_status=bad)
