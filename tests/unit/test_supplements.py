"""Supplement rounds read from a dossier's timeline, and the portal's refreshed record they go into: a request (5)
opens a round, the supplement received (back to 4, with the new due date and the one it replaced) closes it;
withdrawal or stop closes it unanswered; updates that changed nothing are not read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub import packets
from hub.dossier.supplements import SupplementRound, supplement_rounds
from hub.exchange.portal_refresh import DossierRecords, supplement_of
from hub.packets.dossier import DossierStatusUpdate, DossierSync, Step, Supplement
from mappings import dvcqg


@dataclass(frozen=True)
class Entry:
    message_id: str | None
    status: int
    at: datetime
    outcome: str = "applied"
    detail: dict[str, Any] | None = None


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 12, day, hour, tzinfo=UTC)


REQUEST = {"step": {"actor": "Trần Thị Bình", "content": "Bổ sung bản vẽ mặt cắt"}, "paused": True}
RECEIVED = {"step": {"actor": "VBDLIS", "content": "Đã nhận bản vẽ"}, "new_due_at": "2026-12-18T10:00:00Z",
            "previous_due_at": "2026-12-11T10:00:00Z"}  # fmt: skip


def test_a_request_and_its_receipt_are_one_round_with_both_due_dates() -> None:
    rounds = supplement_rounds([
        Entry("m4", 4, at(8, 10), detail=RECEIVED),  # any order: read by time
        Entry("m1", 4, at(1)),
        Entry("m2", 5, at(3), detail=REQUEST),
        Entry("m3", 5, at(4), detail={"step": {"actor": "Lê Văn Cường"}}),  # the same request again
        Entry("s1", 4, at(5), outcome="stale", detail={"new_due_at": "2027-01-01T00:00:00Z"}),  # not read
        Entry("r1", 9, at(6), outcome="rejected"),
    ])  # fmt: skip
    assert rounds == [
        SupplementRound(
            round_id="m2", requested_at=at(3), requested_by="Trần Thị Bình", content="Bổ sung bản vẽ mặt cắt",
            received_at=at(8, 10), receipt_note="Đã nhận bản vẽ", previous_due_at=at(11, 10),
            new_due_at=at(18, 10), closed_status=4,
        )
    ]  # fmt: skip
    assert rounds[0].received


def test_open_unanswered_and_unrequested_rounds() -> None:
    rounds = supplement_rounds([
        Entry("a", 5, at(1), detail=REQUEST),
        Entry("b", 7, at(2)),  # withdrawn: the round closes unanswered
        Entry(None, 4, at(3), detail={"new_due_at": "2026-12-20T10:00:00Z"}),  # received, the request unreported
        Entry("c", 4, at(4)),  # a plain step: no round
        Entry("d", 5, at(5), outcome="corrected"),  # still open
    ])  # fmt: skip
    assert [(r.round_id, r.closed_status, r.received_at, r.new_due_at) for r in rounds] == [
        ("a", 7, None, None), ("BS-20261203090000", 4, at(3), at(20, 10)), ("d", None, None, None),
    ]  # fmt: skip
    assert not rounds[0].received and rounds[2].requested_at == at(5)


def test_a_round_becomes_the_packets_supplement() -> None:
    round_ = SupplementRound("m2", requested_at=at(3), requested_by="Trần Thị Bình", received_at=at(8),
                             previous_due_at=at(11), new_due_at=at(18), closed_status=4)  # fmt: skip
    expected = Supplement(supplement_id="m2", requested_by="Trần Thị Bình", requested_at=at(3), received_at=at(8),
                          previous_due_at=at(11), new_due_at=at(18))  # fmt: skip
    assert supplement_of(round_) == expected
    odd = SupplementRound("id with spaces", requested_at=at(3), requested_by="x" * 300)
    assert supplement_of(odd).supplement_id == "BS-20261203090000" and len(supplement_of(odd).requested_by) == 200


class FakeStore:
    def __init__(self, envelope: bytes | None, entries: list[Entry], due: datetime | None, status: int | None):
        self.envelope, self.entries, self.due, self.status = envelope, entries, due, status

    def latest_sync(self, dossier_code: str) -> DossierSync | None:
        from hub.store.sync_records import read_sync

        return None if self.envelope is None else read_sync(self.envelope)

    def timeline(self, dossier_code: str) -> list[Entry]:
        return self.entries

    def due_date(self, dossier_code: str) -> tuple[datetime | None, datetime | None]:
        return self.due, None

    def dossier(self, dossier_code: str) -> Any:
        return None if self.status is None else type("Record", (), {"status": self.status})()


def _envelope(pki, sync) -> bytes:
    from lxml import etree

    from hub.security.envelope import EnvelopeHeader
    from hub.security.signing import sign_payload

    header = EnvelopeHeader(sender="000.00.00.H12", receiver="000.00.00.G01", message_type="dossier.sync")
    return etree.tostring(sign_payload(pki.province.signer, header, packets.to_element(sync)))


def test_the_refreshed_record_adds_the_rounds_to_the_syncs_and_takes_the_current_due_date(pki) -> None:
    sync = packets.example("dossier.sync").model_copy(update={"status": 2})
    (listed,) = sync.supplements  # the province's own round stays, first
    entries = [Entry("m2", 5, at(3), detail=REQUEST), Entry("m4", 4, at(8), detail=RECEIVED)]
    update = DossierStatusUpdate(dossier_code=sync.dossier_code, status=4, step=Step(actor="VBDLIS"), at=at(8),
                                 source_system="000.00.00.G10", new_due_at=at(18, 10))  # fmt: skip
    records = DossierRecords(FakeStore(_envelope(pki, sync), entries, at(18, 10), 4))
    refreshed = records.refreshed(update)
    assert refreshed is not None
    assert [s.supplement_id for s in refreshed.supplements] == [listed.supplement_id, "m2"]
    assert (refreshed.due_at, refreshed.status) == (at(18, 10), 4)
    calls = dvcqg.supplement_calls(update, refreshed)
    assert [c.service for c in calls.calls] == ["CapNhatTienDoHoSoMC", "DongBoHoSoMC"]
    ours = calls.calls[1].record["DanhSachHoSoBoSung"][1]
    assert (ours["HoSoBoSungId"], ours["NgayHenTraTruoc"], ours["NgayHenTraMoi"]) == ("m2", "20261211170000",
                                                                                        "20261218170000")  # fmt: skip
    assert ours["TrangThaiBoSung"] == ""  # left to the portal profile's values (the adapter fills it)
    assert calls.calls[1].record["NgayHenTra"] == "20261218170000"
    assert dvcqg.validate_record(dvcqg.SERVICE_SYNC, calls.calls[1].record) == []
    # without a sync held, nothing to refresh
    assert DossierRecords(FakeStore(None, entries, None, 4)).refreshed(update) is None


def test_which_steps_refresh_the_record() -> None:
    base = packets.example("dossier.status")
    assert not dvcqg.is_supplement_step(base)  # a plain handover (4)
    assert dvcqg.is_supplement_step(base.model_copy(update={"status": 5}))
    assert dvcqg.is_supplement_step(base.model_copy(update={"new_due_at": at(18)}))
