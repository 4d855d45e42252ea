"""The message log's retention (``hub log archive`` / ``hub log verify``) on SQLite and PostgreSQL.

A store holds messages in every state, some received long ago: the archive takes only the old final ones (every
delivery delivered, or dead with its dead letter closed, or none routed; a finished dossier's latest sync) with
their deliveries, events and dead letters, into a gzip file whose manifest lists each record's SHA-256; it deletes
them only then, audited. Nothing in flight (queued, delivering, retrying, an open dead letter), nothing recent and
nothing the hub still reads (an open dossier's latest sync, an unsettled payment's request) leaves. A second run is
a no-op. ``verify`` passes on the file as written and names the record that differs in a tampered one.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hub.cli import app
from hub.config import get_settings
from hub.errors import ArchiveError, ArchiveMismatchError
from hub.services import log_archive
from hub.store import Store, Submission
from hub.store import log_archive as store_archive
from hub.store.audit import AuditFilter
from hub.store.flow_records import payments
from hub.store.schema import dead_letters, deliveries, dossiers, events, messages
from hub.store.sync_records import latest_sync_envelope

OLD = dt.datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
CUTOFF = dt.datetime(2025, 1, 1, tzinfo=UTC)


def submit(store: Store, message_id: str, *, destinations: tuple[str, ...] = ("P1",), old: bool = True,
           message_type: str = "dossier.status", dossier: str | None = None) -> tuple[int, list[int]]:  # fmt: skip
    """Accept one message (its envelope is its id's bytes); ``old``: received in 2024. Its key and delivery ids."""
    receiver = (destinations or ("hub",))[0]
    (result,) = store.accept_many([Submission(sender="S1", message_id=message_id, message_type=message_type,
                                              receiver=receiver, envelope=f"<{message_id}/>".encode(),
                                              destinations=destinations, dossier_code=dossier)])  # fmt: skip
    assert result.outcome == "accepted" and result.message_pk is not None
    if old:
        with store.transaction() as conn:
            conn.execute(sa.update(messages).where(messages.c.id == result.message_pk).values(received_at=OLD))
    return result.message_pk, list(result.delivery_ids)


def deliver(store: Store, delivery_id: int) -> None:
    store.start_attempts([delivery_id])
    assert store.record_delivered_many([(delivery_id, b"<hub-signed/>", "200 OK")]) == [True]


def dead(store: Store, delivery_id: int, *, close: bool) -> None:
    store.start_attempts([delivery_id])
    letter = store.record_dead(delivery_id, reason="permanent", error="HTTP 400")
    if close:
        store.close_dead_letter(letter, actor="operator", reason="sent by post instead")


@dataclass
class Log:
    """A message log with a message in every state (ids say which)."""

    archivable: set[str]
    kept: set[str]


@pytest.fixture
def log(store: Store) -> Log:
    _, (d,) = submit(store, "old-delivered")
    deliver(store, d)
    _, (d,) = submit(store, "old-dead-closed")
    dead(store, d, close=True)
    submit(store, "old-not-routed", destinations=())  # stored, routed nowhere: nothing to deliver
    _, (d1, d2) = submit(store, "old-delivered-twice", destinations=("P1", "P2"))
    deliver(store, d1)
    deliver(store, d2)
    _, (d,) = submit(store, "old-sync-earlier", message_type="dossier.sync", dossier="D-1")
    deliver(store, d)
    _, (d,) = submit(store, "old-sync-latest-finished", message_type="dossier.sync", dossier="D-3")
    deliver(store, d)
    with store.transaction() as conn:  # D-3 was returned to the applicant (10): nothing reads its record any more
        conn.execute(sa.insert(dossiers).values(code="D-3", status=10, status_at=OLD, applied_at=OLD))
    # Kept: in flight, or recent, or still read by the hub.
    _, (d,) = submit(store, "old-dead-open")
    dead(store, d, close=False)
    submit(store, "old-queued")
    _, (d,) = submit(store, "old-delivering")
    store.start_attempts([d])
    _, (d,) = submit(store, "old-retrying")
    store.start_attempts([d])
    store.record_retry(d, error="HTTP 503", delay_s=60)
    _, (d1, d2) = submit(store, "old-one-of-two-pending", destinations=("P1", "P2"))
    deliver(store, d1)
    _, (d,) = submit(store, "recent-delivered", old=False)
    deliver(store, d)
    _, (d,) = submit(store, "old-sync-latest", message_type="dossier.sync", dossier="D-1")
    deliver(store, d)
    _, (d,) = submit(store, "old-payment-open", message_type="payment.request", dossier="D-2")
    deliver(store, d)
    with store.transaction() as conn:
        conn.execute(sa.insert(payments).values(reference="R-1", kind="payment", connector="PAY", requester="S1",
                                                dossier_code="D-2", amount=50_000, message_id="old-payment-open",
                                                state="pending", created_at=OLD))  # fmt: skip
    archivable = {"old-delivered", "old-dead-closed", "old-not-routed", "old-delivered-twice", "old-sync-earlier",
                  "old-sync-latest-finished"}
    kept = {"old-dead-open", "old-queued", "old-delivering", "old-retrying", "old-one-of-two-pending",
            "recent-delivered", "old-sync-latest", "old-payment-open"}  # fmt: skip
    return Log(archivable, kept)


def stored_ids(store: Store) -> set[str]:
    with store.transaction(readonly=True) as conn:
        return set(conn.scalars(sa.select(messages.c.message_id)))


def archive_lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def rewrite(path: Path, records: list[dict]) -> None:
    with gzip.open(path, "wb") as f:
        for record in records:
            f.write(store_archive.canonical(record) + b"\n")


def test_archive_moves_only_old_final_messages_with_everything_hung_on_them(
    store: Store, log: Log, tmp_path: Path
) -> None:
    out = tmp_path / "archive" / "log.jsonl.gz"
    result = log_archive.archive(store, before=CUTOFF, out=out, actor="ops-test")
    assert (result.records, result.deleted, result.kept_changed) == (6, 6, 0)
    assert result.path == out and result.manifest == out.with_name("log.jsonl.gz.manifest.jsonl")
    assert stored_ids(store) == log.kept
    records = {r["message"]["message_id"]: r for r in archive_lines(out)}
    assert set(records) == log.archivable
    delivered = records["old-delivered"]
    assert base64.b64decode(delivered["message"]["envelope"]) == b"<old-delivered/>"
    (delivery,) = delivered["deliveries"]
    assert delivery["state"] == "delivered" and base64.b64decode(delivery["outbound"]) == b"<hub-signed/>"
    assert {"received", "queued", "attempt_started", "delivered"} <= {e["state"] for e in delivered["events"]}
    (letter,) = records["old-dead-closed"]["dead_letters"]
    assert letter["closed_by"] == "operator" and letter["close_reason"] == "sent by post instead"
    assert len(records["old-delivered-twice"]["deliveries"]) == 2
    assert records["old-not-routed"]["deliveries"] == []
    # Nothing of the archived messages is left behind: no delivery, event or dead letter without its message.
    with store.transaction(readonly=True) as conn:
        pks = set(conn.scalars(sa.select(messages.c.id)))
        assert set(conn.scalars(sa.select(deliveries.c.message_pk))) <= pks
        assert set(conn.scalars(sa.select(events.c.message_pk))) <= pks
        assert conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one() == 1  # the open one
    # Audited: who, which file, its digest, how many deleted.
    (entry,) = store.audit_entries(AuditFilter(action="message_log.archive")).items
    assert entry.actor == "ops-test" and entry.subject == str(out.resolve())
    assert entry.detail is not None and entry.detail["deleted"] == 6
    assert entry.detail["file_sha256"] == result.file_sha256


def test_nothing_in_flight_recent_or_still_read_is_archived(store: Store, log: Log, tmp_path: Path) -> None:
    assert store_archive.count(store.db, CUTOFF) == len(log.archivable)
    log_archive.archive(store, before=CUTOFF, out=tmp_path / "a.jsonl.gz", actor="ops-test")
    archived = {r["message"]["message_id"] for r in archive_lines(tmp_path / "a.jsonl.gz")}
    assert not archived & log.kept
    # The dossier's record as it stands is still where notifications and the portal refresh read it.
    assert latest_sync_envelope(store.db, "D-1") == b"<old-sync-latest/>"


def test_a_second_run_is_a_no_op(store: Store, log: Log, tmp_path: Path) -> None:
    first = log_archive.archive(store, before=CUTOFF, out=tmp_path / "first.jsonl.gz", actor="ops-test")
    assert first.records == 6
    before = stored_ids(store)
    second = log_archive.archive(store, before=CUTOFF, out=tmp_path / "second.jsonl.gz", actor="ops-test")
    assert (second.path, second.records, second.deleted) == (None, 0, 0)
    assert not (tmp_path / "second.jsonl.gz").exists()
    assert stored_ids(store) == before
    assert len(store.audit_entries(AuditFilter(action="message_log.archive")).items) == 1


def test_an_existing_archive_is_never_overwritten(store: Store, log: Log, tmp_path: Path) -> None:
    out = tmp_path / "taken.jsonl.gz"
    out.write_bytes(b"someone else's")
    with pytest.raises(ArchiveError, match="exists already"):
        log_archive.archive(store, before=CUTOFF, out=out, actor="ops-test")
    assert out.read_bytes() == b"someone else's"
    assert log.archivable <= stored_ids(store)  # nothing deleted


def test_verify_passes_on_the_archive_as_written_and_names_a_tampered_record(
    store: Store, log: Log, tmp_path: Path
) -> None:
    out = tmp_path / "log.jsonl.gz"
    log_archive.archive(store, before=CUTOFF, out=out, actor="ops-test")
    intact = log_archive.verify(out)
    assert intact.records == 6
    records = archive_lines(out)
    victim = records[1]["message"]["message_id"]
    records[1]["deliveries"] = []  # someone removes a delivery from the record
    rewrite(out, records)
    with pytest.raises(ArchiveMismatchError) as caught:
        log_archive.verify(out)
    differences = caught.value.differences
    named = [d for d in differences if d.startswith("record 2 ")]
    assert len(named) == 1 and f"message {victim} from S1" in named[0] and "differs" in named[0]
    assert any(d.startswith("the file's sha256 is") for d in differences)
    assert not any(d.startswith("record 1 ") or d.startswith("record 3 ") for d in differences)


def test_verify_names_a_record_missing_from_the_file(store: Store, log: Log, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl.gz"
    log_archive.archive(store, before=CUTOFF, out=out, actor="ops-test")
    records = archive_lines(out)
    last = records[-1]["message"]["message_id"]
    rewrite(out, records[:-1])
    with pytest.raises(ArchiveMismatchError) as caught:
        log_archive.verify(out)
    assert any(f"record 6 (message {last} from S1" in d and "not in the file" in d for d in caught.value.differences)
    assert any("holds 5 records, the manifest says 6" in d for d in caught.value.differences)


def test_a_record_changed_after_it_was_archived_stays_in_the_store(store: Store, log: Log) -> None:
    with store.transaction(readonly=True) as conn:
        pk = conn.scalar(sa.select(messages.c.id).where(messages.c.message_id == "old-delivered"))
        (archived,) = store_archive.read_records(conn, [pk])
    wrong = store_archive.delete_archived(store.db, {pk: "0" * 64}, actor="ops-test", archive="x", archive_sha256="y")
    assert wrong == store_archive.Deleted((), (pk,))
    assert "old-delivered" in stored_ids(store)
    same = store_archive.delete_archived(store.db, {pk: archived.sha256}, actor="ops-test", archive="x",
                                         archive_sha256="y")  # fmt: skip
    assert same.deleted == (pk,) and "old-delivered" not in stored_ids(store)


def run_cli(store_url: str, data_dir: Path, *args: str):
    get_settings.cache_clear()
    try:
        env = {"LIENTHONG_DATABASE_URL": store_url, "LIENTHONG_DATA_DIR": str(data_dir), "COLUMNS": "200"}
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def test_the_cli_archives_to_the_data_folder_and_verifies(store: Store, store_url: str, log: Log,
                                                           tmp_path: Path) -> None:  # fmt: skip
    for command in (["log", "archive", "--help"], ["log", "verify", "--help"]):
        helped = run_cli(store_url, tmp_path, *command)
        assert helped.exit_code == 0 and "--json" in helped.output
    future = run_cli(store_url, tmp_path, "log", "archive", "--before", "2999-01-01")
    assert future.exit_code == 2 and "in the future" in future.output
    done = run_cli(store_url, tmp_path, "log", "archive", "--before", "2025-01-01", "--json", "--actor", "ops-cli")
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert (document["records"], document["deleted"]) == (6, 6)
    path = Path(document["archive"])
    assert path.parent == tmp_path / "archive" and path.name.startswith("message-log-before-20241231T170000Z-")
    assert Path(document["manifest"]) == log_archive.manifest_path(path)
    checked = run_cli(store_url, tmp_path, "log", "verify", str(path), "--json")
    assert checked.exit_code == 0 and json.loads(checked.stdout)["ok"] is True
    again = run_cli(store_url, tmp_path, "log", "archive", "--before", "2025-01-01")
    assert again.exit_code == 0 and "nothing to archive" in again.output
    records = archive_lines(path)
    records[0]["message"]["sender"] = "S9"
    rewrite(path, records)
    tampered = run_cli(store_url, tmp_path, "log", "verify", str(path))
    assert tampered.exit_code == 1
    assert f"record 1 (message {records[0]['message']['message_id']} from S1" in tampered.output
