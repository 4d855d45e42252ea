"""``hub log archive`` and ``hub log verify``: old final messages of the message log moved to a compressed file with
a digest list beside it, and deleted from the store only once that file is written, synced and verified.

The archive (``*.jsonl.gz``) is gzip of JSON lines, one record per message (``hub.store.log_archive``: the message
with its deliveries, events, dead letters and accepted delivery steps). Its manifest, ``<archive>.manifest.jsonl``
beside it, is JSON lines too, so that writing or verifying a million records never holds them all in memory:

- a header: ``{"format", "version", "archive", "before", "created_at", "created_by", "digest": "sha256"}``;
- one line per record, in the archive's order: ``{"line", "message_pk", "sender", "message_id", "received_at",
  "sha256"}`` (the SHA-256 of the record's line, without its newline);
- a closing line: ``{"records", "file_sha256", "file_bytes"}`` (the SHA-256 of the archive file as written).

Both are written under a ``.partial`` name, synced, then renamed: an interrupted run leaves no file that looks
whole, and nothing has been deleted. An existing archive is never overwritten. A second run over the same range
finds nothing left to archive and writes nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

from hub.errors import ArchiveError, ArchiveMismatchError
from hub.store import Store
from hub.store import log_archive as store_archive

MANIFEST_SUFFIX = ".manifest.jsonl"
MOST_DIFFERENCES = 100  # named one by one; past that only counted

#: ``progress(label, total)`` → a context whose value is ``advance(n)`` (the CLI draws a bar; default: nothing).
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextlib.contextmanager
def _no_progress(_label: str, _total: int) -> Iterator[Callable[[int], None]]:
    yield lambda _n: None


@dataclass(frozen=True)
class ArchiveResult:
    """What ``archive`` did: the archive and manifest written (``None``: nothing to archive), the records in it,
    the messages deleted from the store, and those kept because they changed after they were archived."""

    before: datetime
    path: Path | None
    manifest: Path | None
    records: int
    deleted: int
    kept_changed: int
    file_sha256: str | None


@dataclass(frozen=True)
class VerifyResult:
    """An archive that matches its manifest: how many records, and the file's SHA-256."""

    path: Path
    manifest: Path
    records: int
    file_sha256: str


def manifest_path(archive: Path) -> Path:
    """Where an archive's manifest lies: beside it, ``<archive name>.manifest.jsonl``."""
    return archive.with_name(archive.name + MANIFEST_SUFFIX)


def default_path(data_dir: Path, before: datetime, at: datetime) -> Path:
    """``<data dir>/archive/message-log-before-<before>-<at>.jsonl.gz`` (times UTC)."""
    stamp = "%Y%m%dT%H%M%SZ"
    name = f"message-log-before-{before.astimezone(UTC):{stamp}}-{at.astimezone(UTC):{stamp}}.jsonl.gz"
    return data_dir / "archive" / name


def _line(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


def _file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _sync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def archive(store: Store, *, before: datetime, out: Path, actor: str, progress: Progress = _no_progress,
            batch: int = store_archive.BATCH) -> ArchiveResult:  # fmt: skip
    """Archive every final message received before ``before`` (``hub.store.log_archive``) to ``out`` and its
    manifest, verify them as written, then delete those messages from the store (audited). ``ArchiveError`` when
    ``out`` or its manifest exists already, or the written file does not verify (nothing is deleted then)."""
    manifest = manifest_path(out)
    total = store_archive.count(store.db, before)
    if not total:
        return ArchiveResult(before, None, None, 0, 0, 0, None)
    for path in (out, manifest):
        if path.exists():
            raise ArchiveError(f"{path} exists already: an archive is never overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial, manifest_partial = out.with_name(out.name + ".partial"), manifest.with_name(manifest.name + ".partial")
    header = {"format": store_archive.FORMAT, "version": store_archive.VERSION, "archive": out.name,
              "before": before.astimezone(UTC).isoformat(), "created_at": store.now().isoformat(),
              "created_by": actor, "digest": "sha256"}  # fmt: skip
    records = 0
    try:
        with partial.open("wb") as raw, manifest_partial.open("w", encoding="utf-8") as listing:
            listing.write(_line(header))
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
            with gz, progress("archiving", total) as step:
                for found in store_archive.batches(store.db, before, size=batch):
                    for item in found:
                        records += 1
                        gz.write(item.line + b"\n")
                        listing.write(_line({"line": records, "message_pk": item.message_pk, "sender": item.sender,
                                             "message_id": item.message_id, "received_at": item.received_at,
                                             "sha256": item.sha256}))  # fmt: skip
                    step(len(found))
            raw.flush()
            os.fsync(raw.fileno())
            file_sha256, size = _file_sha256(partial)
            listing.write(_line({"records": records, "file_sha256": file_sha256, "file_bytes": size}))
        if not records:  # what was counted became unarchivable meanwhile
            return ArchiveResult(before, None, None, 0, 0, 0, None)
        _sync(manifest_partial)
        partial.rename(out)
        manifest_partial.rename(manifest)
    finally:
        partial.unlink(missing_ok=True)
        manifest_partial.unlink(missing_ok=True)
    try:
        verify(out)
    except ArchiveError as exc:
        raise ArchiveError(f"the archive just written does not verify, nothing was deleted: {exc}") from exc
    deleted, changed = _delete(store, out, manifest, file_sha256, actor, records, progress, batch)
    return ArchiveResult(before, out, manifest, records, deleted, changed, file_sha256)


def _delete(store: Store, out: Path, manifest: Path, file_sha256: str, actor: str, records: int, progress: Progress,
            batch: int) -> tuple[int, int]:  # fmt: skip
    """Delete the archived messages, ``batch`` per transaction, as the manifest lists them."""
    deleted = changed = 0
    subject = str(out.resolve())
    with progress("deleting from the store", records) as step:
        expected: dict[int, str] = {}
        for entry in _entries(manifest):
            expected[int(entry["message_pk"])] = str(entry["sha256"])
            if len(expected) >= batch:
                done = store_archive.delete_archived(store.db, expected, actor=actor, archive=subject,
                                                     archive_sha256=file_sha256)  # fmt: skip
                deleted, changed = deleted + len(done.deleted), changed + len(done.changed)
                step(len(expected))
                expected = {}
        if expected:
            done = store_archive.delete_archived(store.db, expected, actor=actor, archive=subject,
                                                 archive_sha256=file_sha256)  # fmt: skip
            deleted, changed = deleted + len(done.deleted), changed + len(done.changed)
            step(len(expected))
    return deleted, changed


def _manifest_lines(manifest: Path) -> Iterator[dict[str, Any]]:
    try:
        with manifest.open(encoding="utf-8") as f:
            for number, text in enumerate(f, 1):
                try:
                    document = json.loads(text)
                except ValueError as exc:
                    raise ArchiveError(f"{manifest}: line {number} is not JSON ({exc})") from None
                if not isinstance(document, dict):
                    raise ArchiveError(f"{manifest}: line {number} is not a JSON object")
                yield document
    except OSError as exc:
        raise ArchiveError(f"cannot read the manifest {manifest}: {exc.strerror or exc}") from None


def _entries(manifest: Path) -> Iterator[dict[str, Any]]:
    """The record lines of a manifest (its header and closing line left out)."""
    for document in _manifest_lines(manifest):
        if "sha256" in document and "line" in document:
            yield document


def _named(entry: dict[str, Any] | None, line: bytes | None = None) -> str:
    """A record named for a person: its message id and sender, when it was received, its key in the store."""
    if entry is None and line is not None:
        try:
            message = json.loads(line)["message"]
            entry = {"message_id": message["message_id"], "sender": message["sender"],
                     "received_at": message["received_at"], "message_pk": message["id"]}  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return "not a readable record"
    assert entry is not None
    return (f"message {entry.get('message_id')} from {entry.get('sender')}, received {entry.get('received_at')}, "
            f"store key {entry.get('message_pk')}")  # fmt: skip


def _archive_lines(path: Path, differences: list[str]) -> Iterator[bytes]:
    """The archive's record lines (without their newline); a broken gzip stream ends them with a difference."""
    count = 0
    try:
        with gzip.open(path, "rb") as f:
            for line in f:
                count += 1
                yield line.rstrip(b"\n")
    except (OSError, EOFError, zlib.error) as exc:
        differences.append(f"the file is not a whole gzip stream after record {count}: {exc}")


def verify(path: Path, manifest: Path | None = None) -> VerifyResult:
    """Check an archive against its manifest: the file's SHA-256 and size, then each record's SHA-256 in order.
    ``ArchiveMismatchError`` naming each record (up to ``MOST_DIFFERENCES``) and the file that differ;
    ``ArchiveError`` when either cannot be read or the manifest is not one of an archive."""
    manifest = manifest or manifest_path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such archive file")
    if not manifest.is_file():
        raise ArchiveError(f"{manifest}: no manifest beside the archive")
    lines = _manifest_lines(manifest)
    header = next(lines, None)
    if header is None or header.get("format") != store_archive.FORMAT:
        raise ArchiveError(f"{manifest} is not the manifest of a message-log archive (its first line names no "
                           f"{store_archive.FORMAT!r})")  # fmt: skip
    summary: dict[str, Any] | None = None

    def entries() -> Iterator[dict[str, Any]]:
        nonlocal summary
        for document in lines:
            if "file_sha256" in document:
                summary = document
            else:
                yield document

    differences: list[str] = []
    more = 0
    records = 0
    for number, (line, entry) in enumerate(zip_longest(_archive_lines(path, differences), entries()), 1):
        problem = None
        if line is not None:
            records += 1
        if line is None:
            problem = f"record {number} ({_named(entry)}) is in the manifest but not in the file"
        elif entry is None:
            problem = f"record {number} ({_named(None, line)}) is in the file but not in the manifest"
        elif (actual := hashlib.sha256(line).hexdigest()) != entry.get("sha256"):
            problem = f"record {number} ({_named(entry)}) differs: its sha256 is {actual}, the manifest says " \
                      f"{entry.get('sha256')}"  # fmt: skip
        if problem is not None:
            if len(differences) < MOST_DIFFERENCES:
                differences.append(problem)
            else:
                more += 1
    file_sha256, size = _file_sha256(path)
    if summary is None:
        differences.append("the manifest has no closing line (records, file_sha256): it is incomplete")
    else:
        if summary.get("file_sha256") != file_sha256:
            differences.append(f"the file's sha256 is {file_sha256}, the manifest says {summary.get('file_sha256')}")
        if summary.get("file_bytes") not in (None, size):
            differences.append(f"the file is {size} bytes, the manifest says {summary.get('file_bytes')}")
        if summary.get("records") != records:
            differences.append(f"the file holds {records} records, the manifest says {summary.get('records')}")
    if more:
        differences.append(f"… and {more} more records differ")
    if differences:
        raise ArchiveMismatchError(str(path), differences)
    return VerifyResult(path, manifest, records, file_sha256)
