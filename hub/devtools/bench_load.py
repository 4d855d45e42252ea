"""The load side of ``hub bench``: the envelopes it sends and the load processes that send them.

Each load process (a ``multiprocessing`` pool process) takes every ``processes``-th message of the run, from
its ``share``. Direct (``--via direct``) it accepts them itself, as an API process would (its own ``Runtime``:
store, broker, verifier); over HTTP (``--via http``) it POSTs them to ``hub serve`` from one aiohttp event loop.

Two ways to send (``LoadPlan.rate``):

- as fast as the window lets (the default): at most ``window`` of the process's messages accepted but not yet
  delivered, so latency measures the exchange, not an ever-growing queue;
- paced (``--rate R``): message ``i`` of the run is offered at ``start_at + i / R`` whatever the hub does (an open
  loop: a hub that falls behind shows a growing latency and an achieved rate below the offered one, instead of
  quietly slowing the load down).

The envelopes are signed before the clock starts (``make_envelopes``), or, for a soak run of a million messages
(about 4 GB of envelopes), by each load process as it sends them (``EnvelopeFactory`` in the process).
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from lxml import etree

from hub import packets
from hub.config import Settings
from hub.exchange.pipeline import Acceptor
from hub.packets.examples import DOSSIER_CODE
from hub.runtime import Runtime
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import Signer, sign_payload
from hub.xmlparse import parse_xml

PROVINCE, SINK = "000.00.00.H12", "000.00.00.B01"
SYNC = "dossier.sync"
MESSAGE_TYPES = (SYNC, "dossier.status", "payment.request", "postal.order")
SERIALS_A_DAY = 9999  # a dossier code's serial: NNNN, never 0000


def padded_sync(target_bytes: int) -> etree._Element:
    """The example ``dossier.sync`` with more documents until its XML is about ``target_bytes`` long: still valid,
    so the whole intake (parse, verify, validate, decode, store, publish) works on a body of that size."""
    ns = f"{{{packets.PACKET_NAMESPACE}}}"
    payload = packets.to_element(packets.example(SYNC))
    documents = payload.find(f"{ns}documents")
    assert documents is not None
    template = copy.deepcopy(documents[0])
    template.find(f"{ns}name").text = "Bản vẽ " + "thiết kế " * 100
    size, step = len(etree.tostring(payload)), len(etree.tostring(template))
    for i in range(max(0, target_bytes - size) // step):
        document = copy.deepcopy(template)
        document.find(f"{ns}componentCode").text = f"PAD-{i:05d}"
        documents.append(document)
    return payload


def dossier_code(first_day: int, i: int) -> str:
    """The ``i``-th message's own dossier code (agency-YYMMDD-NNNN): 9,999 serials a day from the run's first day.

    Every message is about a dossier of its own: on one shared dossier the status machine would find every
    ``dossier.status`` older than the ``dossier.sync`` before it (a sync is as old as its record) and store it
    as stale, not routed, and every commit would lock that one dossier's row."""
    day = date.fromordinal(first_day + i // SERIALS_A_DAY)
    return f"{PROVINCE}-{day:%y%m%d}-{i % SERIALS_A_DAY + 1:04d}"


@dataclass(frozen=True)
class FactoryArgs:
    """What a load process needs to sign the run's envelopes itself (picklable)."""

    key_path: Path
    cert_path: Path
    run_id: str
    first_day: int
    payload_bytes: int = 0


class EnvelopeFactory:
    """Signs the run's ``i``-th envelope: ~4 KB, cycling through a few message types (with ``payload_bytes``: a
    ``dossier.sync`` padded to about that size), each about its own dossier. Message ids and dossier codes are
    unique per run (a random run id and first day), so a run against a long-lived store never collides with an
    earlier one."""

    def __init__(self, args: FactoryArgs) -> None:
        self.args = args
        self.signer = Signer.from_files(args.key_path, args.cert_path)
        examples = {t: packets.example(t) for t in MESSAGE_TYPES}
        examples["dossier.status"] = examples["dossier.status"].model_copy(update={"source_system": PROVINCE})
        self.example_code = DOSSIER_CODE.encode()  # every example is about this one dossier
        self.payloads = {t: etree.tostring(packets.to_element(m)) for t, m in examples.items()}
        self.types: tuple[str, ...] = MESSAGE_TYPES
        if args.payload_bytes:
            self.payloads[SYNC], self.types = etree.tostring(padded_sync(args.payload_bytes)), (SYNC,)

    @staticmethod
    def new_run(key_path: Path, cert_path: Path, payload_bytes: int = 0) -> FactoryArgs:
        """A new run's arguments: a random run id, and a random first day between 2001 and 2023."""
        first_day = date(2001, 1, 1).toordinal() + secrets.randbelow(365 * 22)
        return FactoryArgs(key_path, cert_path, uuid.uuid4().hex[:8], first_day, payload_bytes)

    def message_id(self, i: int) -> str:
        return f"bench-{self.args.run_id}-{i:07d}"

    def envelope(self, i: int) -> bytes:
        message_type = self.types[i % len(self.types)]
        code = dossier_code(self.args.first_day, i).encode()
        payload = self.payloads[message_type].replace(self.example_code, code)
        header = EnvelopeHeader(
            sender=PROVINCE, receiver=SINK, message_type=message_type, message_id=self.message_id(i)
        )
        return etree.tostring(sign_payload(self.signer, header, parse_xml(payload)))


def make_envelopes(factory: EnvelopeFactory, count: int, progress: Callable[[int], None]) -> list[bytes]:
    """The run's first ``count`` envelopes, signed now."""
    out = []
    for i in range(count):
        out.append(factory.envelope(i))
        progress(1)
    return out


@dataclass(frozen=True)
class LoadPlan:
    """What one load process sends, and how (see the module docstring)."""

    share: int  # this process's place: it sends messages share, share + processes, …
    processes: int
    messages: int  # in the whole run
    envelopes: Sequence[bytes] | None  # this process's share, signed; None: sign them as they go
    window: int  # most of this process's messages accepted and not yet delivered (not paced)
    batch: int  # envelopes per accept_many (direct) or per gathered round of POSTs (http), when not paced
    count_url: str  # the sink's counts
    rate: float | None = None  # offered msg/s of the whole run; None: as fast as the window lets
    start_at: float = 0.0  # time.time() of the paced schedule's message 0
    sample_every: int = 1  # keep the accept time of every n-th message only (a soak run's latency sample)

    def indices(self) -> range:
        return range(self.share, self.messages, self.processes)

    def due(self, i: int) -> float:
        """When message ``i`` of the run is offered (paced)."""
        assert self.rate
        return self.start_at + i / self.rate


@dataclass
class LoadReport:
    """What one load process did: the accept time of (a sample of) its messages, by id, how many it sent, when the
    first and last were accepted, and how long it spent inside accept calls (direct) or POST rounds (http)."""

    accepted_at: dict[str, float] = field(default_factory=dict)
    accepted: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    busy_s: float = 0.0

    def took(self, index: int, message_id: str, at: float, sample_every: int) -> None:
        self.accepted += 1
        self.first_at = self.first_at or at
        self.last_at = max(self.last_at, at)
        if index % sample_every == 0:
            self.accepted_at[message_id] = at


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback sink
        return json.loads(response.read())


# ---------------------------------------------------------------- the processes' own state (set by the initializers)

_acceptor: Acceptor | None = None
_loader: tuple[str, str, int] | None = None
_factory: EnvelopeFactory | None = None


def acceptor_init(settings: dict[str, Any], factory: FactoryArgs | None) -> None:
    """Acceptor process start-up: its own store, broker connection and verifier, like an API worker."""
    global _acceptor, _factory
    _acceptor = Runtime.open(Settings(**settings)).acceptor()
    _acceptor.defer_marks = True
    _factory = EnvelopeFactory(factory) if factory is not None else None


def loader_init(api_key: str, url: str, concurrency: int, factory: FactoryArgs | None) -> None:
    """Load-process start-up (``--via http``): where to POST, with which key, how many requests at once."""
    global _loader, _factory
    _loader = (api_key, url, concurrency)
    _factory = EnvelopeFactory(factory) if factory is not None else None


def process_ready(_: int) -> int:
    """Answered once a pool process has started and run its initializer (it imported the hub by then)."""
    time.sleep(0.2)  # lets every pool process take one of these
    assert _acceptor is not None or _loader is not None
    return 0


def _envelope(plan: LoadPlan, j: int, i: int) -> bytes:
    """The process's ``j``-th envelope, message ``i`` of the run."""
    if plan.envelopes is not None:
        return plan.envelopes[j]
    assert _factory is not None, "a load process without envelopes signs them: it needs its factory"
    return _factory.envelope(i)


def _sleep_until(at: float) -> None:
    delay = at - time.time()
    if delay > 0:
        time.sleep(delay)


def accept_share(plan: LoadPlan) -> LoadReport:
    """Accept this process's share in batches (``--via direct``), windowed or paced."""
    assert _acceptor is not None
    report = LoadReport()
    indices = plan.indices()
    j = 0
    while j < len(indices):
        if plan.rate:
            _sleep_until(plan.due(indices[j]))
            now, k = time.time(), j + 1
            while k < len(indices) and k - j < plan.batch and plan.due(indices[k]) <= now:
                k += 1  # everything due by now goes in this batch
        else:
            while report.accepted - _get_json(plan.count_url)["unique"] / plan.processes >= plan.window:
                time.sleep(0.005)
            k = min(len(indices), j + plan.batch)
        batch = [_envelope(plan, n, indices[n]) for n in range(j, k)]
        t0 = time.perf_counter()
        results = _acceptor.accept_many(batch)
        report.busy_s += time.perf_counter() - t0
        at = time.time()
        for n, result in zip(range(j, k), results, strict=True):
            if isinstance(result, Exception):
                raise RuntimeError(f"benchmark envelope rejected: {result}")
            report.took(indices[n], result.message_id, at, plan.sample_every)
        j = k
    _acceptor.flush()
    return report


def post_share(plan: LoadPlan) -> LoadReport:
    """POST this process's share to the API (``--via http``), windowed or paced."""
    return asyncio.run(_post_share(plan))


async def _post_share(plan: LoadPlan) -> LoadReport:
    # aiohttp on one event loop: the load generator shares the two cores with the hub, and this costs it about
    # a quarter of the CPU per request that a pool of threads with a blocking client does.
    import aiohttp

    assert _loader is not None
    api_key, url, concurrency = _loader
    headers = {"Content-Type": "application/xml", "X-Api-Key": api_key}
    report = LoadReport()
    indices = plan.indices()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def post(data: bytes) -> tuple[str, float]:
            async with session.post(url, data=data, headers=headers) as response:
                answer = await response.read()
            if response.status != 202:
                raise RuntimeError(f"benchmark envelope rejected: HTTP {response.status} {answer[:300]!r}")
            return json.loads(answer)["message_id"], time.time()

        if plan.rate:
            await _paced_posts(plan, indices, post, concurrency, report)
            return report

        async def delivered() -> int:
            async with session.get(plan.count_url) as response:
                return (await response.json())["unique"]

        for j in range(0, len(indices), plan.batch):
            while report.accepted - await delivered() / plan.processes >= plan.window:
                await asyncio.sleep(0.005)
            t0 = time.perf_counter()
            batch = range(j, min(len(indices), j + plan.batch))
            answers = await asyncio.gather(*(post(_envelope(plan, n, indices[n])) for n in batch))
            for n, (message_id, at) in zip(batch, answers, strict=True):
                report.took(indices[n], message_id, at, plan.sample_every)
            report.busy_s += time.perf_counter() - t0
    return report


async def _paced_posts(plan: LoadPlan, indices: range, post: Callable[[bytes], Any], concurrency: int,
                       report: LoadReport) -> None:  # fmt: skip
    """Offer each message at its due time, at most ``concurrency`` in flight (beyond that the offer waits, and
    the achieved rate falls below the offered one)."""
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()
    failed: list[BaseException] = []

    async def send(n: int) -> None:
        try:
            message_id, at = await post(_envelope(plan, n, indices[n]))
            report.took(indices[n], message_id, at, plan.sample_every)
        except Exception as exc:
            failed.append(exc)
        finally:
            slots.release()

    started = time.perf_counter()
    for n in range(len(indices)):
        delay = plan.due(indices[n]) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        if failed:
            slots.release()
            break
        task = asyncio.create_task(send(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    report.busy_s += time.perf_counter() - started
    if failed:
        raise failed[0]
