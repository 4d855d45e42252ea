"""The ``hub`` command line.

Exit codes (every command): 0 success · 1 the input was checked and rejected (invalid packet, bad
signature) · 2 usage error (unknown option, unreadable file, unusable key).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from lxml import etree
from rich.console import Console
from rich.markup import escape as esc  # table cells hold partner and sign-in text: never markup

from hub import __version__
from hub.errors import KeyMaterialError, LienthongError, RejectedError, UnknownMessageTypeError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
EXIT_CODES_HELP = "Exit codes: 0 success, 1 input rejected (invalid or badly signed), 2 usage error."

app = typer.Typer(
    name="hub",
    help=f"Lienthong, the provincial data-sharing hub. {EXIT_CODES_HELP}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create keys and certificates.", no_args_is_help=True)
envelope_app = typer.Typer(help="Sign and verify hub envelopes.", no_args_is_help=True)
connector_app = typer.Typer(help="Register and check the partner systems (connectors).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(envelope_app, name="envelope")
app.add_typer(connector_app, name="connector")

# Piped output (CI logs, files) gets a fixed, readable width instead of rich's 80-column fallback.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def _read_input(file: Path) -> bytes:
    if str(file) == "-":
        return sys.stdin.buffer.read()
    try:
        return file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None


def _check_type(message_type: str) -> str:
    from hub import packets

    try:
        return packets.packet_type(message_type).name
    except UnknownMessageTypeError as exc:
        raise _fail(str(exc)) from None


def _print_issues(source: str, issues: list) -> None:
    for issue in issues:
        line = f"{issue.line}" if issue.line is not None else "-"
        err.print(f"{source}:{line}: {issue.path}: {issue.message} [rule: {issue.rule}]", markup=False)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead (times ISO 8601 with offset)")]
UtcOpt = Annotated[bool, typer.Option("--utc", help="Show times in UTC instead of the calendar's local time (UTC+7)")]


class DeadLetterStateOpt(StrEnum):
    """`hub dead-letters list --state`: which dead letters to list."""

    open = "open"
    closed = "closed"
    replayed = "replayed"
    all = "all"


def _cli_actor(actor: str | None):
    """The audit's actor for a command run at a terminal: the named or current user, client ``cli``."""
    import getpass

    from hub.services.actions import Actor

    return Actor(actor or getpass.getuser(), None, "cli")


def _clock(utc: bool):
    """The zone for the times a command shows: the working calendar's (``calendar_timezone``), or UTC."""
    from hub.cliformat import Clock
    from hub.config import get_settings

    return Clock.of(get_settings().calendar_timezone, utc=utc)


FileArg = Annotated[Path, typer.Argument(help="XML file to read ('-' for standard input)", show_default=False)]
TypeOpt = Annotated[str, typer.Option("--type", "-t", help="Message type, e.g. dossier.sync (see `hub types`)")]


@app.command()
def version() -> None:
    """Print the hub's version."""
    out.print(f"lienthong {__version__}")


@app.command()
def types() -> None:
    """List the canonical message types and their root elements."""
    from hub import packets

    for name, ptype in sorted(packets.PACKET_TYPES.items()):
        out.print(f"{name:<18} <{ptype.root}>  {(ptype.model.__doc__ or '').strip().splitlines()[0]}", markup=False)


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Option(help="Name of the key holder; files are NAME.key and NAME.pem")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the key, its certificate and the demo CA")],
    algorithm: Annotated[str, typer.Option(help="rsa (RSA-2048) or ec (ECDSA P-256)")] = "rsa",
    days: Annotated[int, typer.Option(help="Certificate validity in days")] = 730,
    code: Annotated[
        str | None,
        typer.Option(help="Connector code the certificate signs for through the CA (subject serialNumber)"),
    ] = None,
) -> None:
    """Create a private key and a certificate signed by the demo CA in OUT (the CA is created if absent)."""
    from hub.security import keys

    try:
        issued = keys.issue_key(name, out_dir, algorithm=algorithm, days=days, code=code)
    except KeyMaterialError as exc:
        raise _fail(str(exc)) from None
    if issued.ca_created:
        out.print(f"created demo CA     {issued.ca_cert_path} (key {out_dir / keys.CA_KEY_FILE})", markup=False)
    out.print(f"created private key {issued.key_path} (mode 0600)", markup=False)
    out.print(
        f"created certificate {issued.cert_path}: CN={name}, valid to "
        f"{issued.certificate.not_valid_after_utc:%Y-%m-%d}, SHA-256 {keys.fingerprint(issued.certificate)[:16]}…",
        markup=False,
    )


@app.command()
def example(
    message_type: Annotated[str, typer.Argument(metavar="TYPE", help="Message type, e.g. dossier.sync")],
) -> None:
    """Print a valid sample payload of TYPE (see `hub types`)."""
    from hub import packets

    name = _check_type(message_type)
    sys.stdout.buffer.write(packets.to_xml(packets.example(name)))


@app.command()
def validate(file: FileArg, message_type: TypeOpt) -> None:
    """Check a canonical payload against its XSD and the domain rules; list every problem found. A valid
    dossier.sync whose procedure the hub's procedure catalogue does not list gets a warning on stderr (still exit
    0; none while the catalogue is empty)."""
    from hub import packets

    name = _check_type(message_type)
    data = _read_input(file)
    issues = packets.validate_xml(name, data)
    if issues:
        _print_issues(str(file), issues)
        err.print(f"{file}: {len(issues)} problem(s); not a valid {name}", markup=False)
        raise typer.Exit(EXIT_REJECTED)
    out.print(f"{file}: valid {name}", markup=False)
    if name == "dossier.sync":
        warning = _catalogue_warning(packets.from_xml(name, data))
        if warning is not None:
            err.print(f"{file}: warning: {warning.message} [rule: {warning.rule}]", markup=False)


def _catalogue_warning(model: Any) -> Any:
    """The intake warning for a dossier whose procedure the hub's procedure catalogue does not list; ``None`` when
    it does, when the catalogue is empty, or when there is no store to read it from (a SQLite file not created
    yet is not created here)."""
    from sqlalchemy.engine import make_url

    from hub.config import get_settings
    from hub.store import Store
    from hub.store.catalogue import KnownProcedures

    url = make_url(get_settings().database_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return None
    try:
        with Store(url) as store:
            return KnownProcedures(store.catalogue_procedure_codes).warning(model.procedure_code)
    except Exception:  # an unreachable or unmigrated store: validation does not depend on it
        return None


@envelope_app.command("sign")
def envelope_sign(
    file: FileArg,
    key: Annotated[Path, typer.Option(help="Sender's PEM private key")],
    cert: Annotated[Path, typer.Option(help="Sender's PEM certificate")],
    message_type: TypeOpt,
    sender: Annotated[str, typer.Option(help="Sender's agency code")],
    receiver: Annotated[str, typer.Option(help="Receiver's agency code")],
    message_id: Annotated[str | None, typer.Option(help="Message id (default: a new UUID)")] = None,
    correlation_id: Annotated[str | None, typer.Option(help="Correlation id (default: the message id)")] = None,
    user_id: Annotated[str | None, typer.Option(help="Officer or user on whose behalf the message is sent")] = None,
) -> None:
    """Wrap a payload in a signed envelope and write it to standard output.

    The payload is validated first; the header's dossier code is taken from the payload when it has one.
    """
    from hub import packets
    from hub.security.envelope import EnvelopeHeader
    from hub.security.signing import Signer, sign_payload
    from hub.xmlparse import parse_xml

    name = _check_type(message_type)
    data = _read_input(file)
    issues = packets.validate_xml(name, data)
    if issues:
        _print_issues(str(file), issues)
        raise _fail(f"{file} is not a valid {name}; nothing signed", EXIT_REJECTED)
    payload = parse_xml(data)
    try:
        signer = Signer.from_files(key, cert)
    except KeyMaterialError as exc:
        raise _fail(str(exc)) from None
    fields: dict[str, object] = {"sender": sender, "receiver": receiver, "message_type": name}
    if message_id:
        fields["message_id"] = message_id
    if correlation_id:
        fields["correlation_id"] = correlation_id
    if user_id:
        fields["user_id"] = user_id
    dossier_code = payload.findtext(f"{{{packets.PACKET_NAMESPACE}}}dossierCode")
    if dossier_code:
        fields["dossier_code"] = dossier_code.strip()
    try:
        header = EnvelopeHeader(**fields)
        signed = sign_payload(signer, header, payload)
    except (ValueError, LienthongError) as exc:
        raise _fail(f"cannot build the envelope: {exc}") from None
    sys.stdout.buffer.write(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))
    sys.stdout.buffer.write(b"\n")


@envelope_app.command("verify")
def envelope_verify(
    file: FileArg,
    trust: Annotated[Path, typer.Option(help="Trusted certificate file, or a folder of CA/partner certificates")],
) -> None:
    """Verify a signed envelope: signature, certificate trust and validity, and the payload's schema.

    Prints one line: who signed what (exit 0), or why it was rejected (exit 1).
    """
    from hub.security.signing import EnvelopeVerifier, TrustStore

    try:
        store = TrustStore.from_path(trust)
    except KeyMaterialError as exc:
        raise _fail(str(exc)) from None
    try:
        verified = EnvelopeVerifier(store).verify(_read_input(file))
    except RejectedError as exc:
        reason = "; ".join(f"{i.path}: {i.message} [rule: {i.rule}]" for i in exc.issues[:3])
        if len(exc.issues) > 3:
            reason += f"; and {len(exc.issues) - 3} more"
        mid = f" message {exc.message_id}:" if exc.message_id else ""
        err.print(f"INVALID{mid} {reason}", markup=False)
        raise typer.Exit(EXIT_REJECTED) from None
    h = verified.header
    dossier = f" dossier {h.dossier_code}" if h.dossier_code else ""
    out.print(
        f"VALID {h.message_type} message {h.message_id} from {h.sender} to {h.receiver}{dossier}, "
        f"signed by {verified.signer} ({verified.trusted_as}) at {h.created_at:%Y-%m-%dT%H:%M:%SZ}",
        markup=False,
    )


@app.command()
def walkthrough(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo keys")] = Path("var/demo"),
) -> None:
    """Take every message type through example, validate, sign, verify and a tamper check, and report.

    Real keys from a demo CA, real XML-DSig (`make demo` runs `hub demo`, the partner flows).
    """
    from rich.table import Table

    from hub.devtools import walkthrough as tour

    out.print(f"Lienthong walkthrough: keys in {out_dir} (demo CA + province key, created if absent)")
    results = tour.run(out_dir)
    table = Table(title="Every canonical packet through the envelope chain")
    table.add_column("message type", no_wrap=True)
    table.add_column("payload", no_wrap=True)
    table.add_column("envelope", no_wrap=True, justify="right")
    table.add_column("verified", no_wrap=True)
    table.add_column("1 char flipped", no_wrap=True)
    for r in results:
        table.add_row(
            r.message_type,
            "valid" if r.valid else "INVALID",
            f"{r.signed_bytes} B",
            f"by {r.verified_by}" if r.verified_by else "FAILED",
            f"rejected: {r.tamper_rejected_with}" if r.tamper_rejected_with else "ACCEPTED (bad)",
        )
    out.print(table)
    failed = [r.message_type for r in results if not r.ok]
    if failed:
        raise _fail(f"walkthrough failed for {', '.join(failed)}", EXIT_REJECTED)
    out.print(
        f"All {len(results)} message types: sample payload valid, envelope signed (RSA-2048, SHA-256, exc-C14N) "
        "and verified against the demo CA, and a one-character change rejected.\n"
        f"Try it yourself: {out_dir}/province.key signs, {out_dir}/ca.pem verifies (see README)."
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: LIENTHONG_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: LIENTHONG_API_PORT]")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP API and the operator page (http://HOST:PORT/)."""
    import uvicorn

    from hub.api.server import PROTOCOL
    from hub.config import get_settings
    from hub.logs import logging_dict

    settings = get_settings()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker counts in its own files; /metrics in any worker aggregates them all.
        import shutil

        metrics_dir = settings.data_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if host or port:  # the app's settings (the WSDL's default address) follow the options
        os.environ["LIENTHONG_API_HOST"] = host or settings.api_host
        os.environ["LIENTHONG_API_PORT"] = str(port or settings.api_port)
        get_settings.cache_clear()
    # An import string and a factory: every worker process builds its own app (one Runtime per process).
    uvicorn.run(
        "hub.api:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=logging_dict(settings),  # JSON lines (masked) from every worker process, uvicorn's too
        http=PROTOCOL,  # request headers must arrive within LIENTHONG_HEADER_TIMEOUT_S
        timeout_keep_alive=settings.keep_alive_s,
    )


dead_app = typer.Typer(help="Inspect and replay messages that could not be delivered.", no_args_is_help=True)
app.add_typer(dead_app, name="dead-letters")


def _runtime():
    from hub.config import get_settings
    from hub.runtime import Runtime

    try:
        return Runtime.open(get_settings())
    except LienthongError as exc:
        raise _fail(str(exc)) from None


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@app.command()
def worker(
    processes: Annotated[int, typer.Option(help="Worker processes to run (each with its own broker connection)")] = 1,
    prefetch: Annotated[int, typer.Option(help="Deliveries taken from the queue at once per process")] = 64,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many idle seconds (tests, batch runs)")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve each process's Prometheus metrics on this port (process i on port + i)"),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address the metrics listen on (0.0.0.0 in a container)")
    ] = "127.0.0.1",
    catalogue_every: Annotated[
        float | None,
        typer.Option(
            help="Also sync the national portal's procedure catalogue every HOURS (one worker process at a time, "
            "across hosts: a lease in the store) [default: LIENTHONG_CATALOGUE_EVERY_HOURS, unset: never]",
            metavar="HOURS",
            min=0.01,
            show_default=False,
        ),
    ] = None,
    reconcile_every: Annotated[
        float | None,
        typer.Option(
            help="QUERY the payments whose CONFIRM has not come (after LIENTHONG_PAYMENT_RECONCILE_AFTER_MINUTES) "
            "every MINUTES; 0: never [default: LIENTHONG_PAYMENT_RECONCILE_EVERY_MINUTES, 5]",
            metavar="MINUTES",
            min=0,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Deliver queued messages to their destinations until SIGTERM (in-flight deliveries finish first).

    A store or broker outage, at start or later, is waited out with backoff: the worker never exits for it."""
    import functools

    from hub.config import get_settings
    from hub.runtime import Background, run_backgrounds, run_workers

    settings = get_settings()
    every = catalogue_every if catalogue_every is not None else settings.catalogue_every_hours
    hooks: list[Background] = []
    if every is not None:
        from hub.flows.catalogue import start_schedule

        hooks.append(functools.partial(start_schedule, every))
    reconcile = reconcile_every if reconcile_every is not None else settings.payment_reconcile_every_minutes
    if reconcile > 0:
        from hub.flows import reconcile as payments_reconcile

        hooks.append(functools.partial(payments_reconcile.start_schedule, reconcile,
                                       settings.payment_reconcile_after_minutes))  # fmt: skip
    background = functools.partial(run_backgrounds, hooks) if hooks else None
    found = _wait_for_destinations(settings)
    if found is None:  # SIGTERM while the store was down
        return
    if not found:
        raise _fail(
            "no destinations: register connectors (`hub connector add`) or set LIENTHONG_ROUTES_FILE to a "
            "routing table (see hub/exchange/routing.py)"
        )
    delivered = run_workers(settings, processes=processes, prefetch=prefetch, idle_exit_s=idle_exit,
                            metrics_port=metrics_port, metrics_host=metrics_host, background=background)  # fmt: skip
    out.print(f"worker stopped after settling {delivered} deliveries", markup=False)


def _wait_for_destinations(settings) -> bool | None:
    """``has_destinations``, reading the registry once the store is up (a worker started before its database);
    ``None`` when SIGTERM came first."""
    import signal
    import threading

    from hub.errors import StoreUnavailableError
    from hub.runtime import has_destinations

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    delay = 0.5
    try:
        while not stop.is_set():
            try:
                return has_destinations(settings)
            except StoreUnavailableError as exc:
                if delay == 0.5:  # one line per outage, as the worker logs it
                    err.print(f"store unavailable, waiting for it (backoff up to 10 s): {exc}", markup=False)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return None
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("worker-health")
def worker_health(
    max_age: Annotated[float, typer.Option(help="Seconds within which a live worker must have written")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every heartbeat as JSON")] = False,
) -> None:
    """Exit 0 when a worker process of this host is alive and wrote its heartbeat within --max-age, else 1 (with
    the reason): the health probe of a worker container."""
    import json

    from hub.config import get_settings
    from hub.exchange.heartbeat import check, read_heartbeats

    data_dir = get_settings().data_dir
    healthy, reason = check(data_dir, max_age)
    if as_json:  # stdout is then the JSON document alone; the verdict goes to stderr
        sys.stdout.write(json.dumps(read_heartbeats(data_dir), indent=2) + "\n")
    (out if healthy and not as_json else err).print(reason, markup=False)
    raise typer.Exit(EXIT_OK if healthy else EXIT_REJECTED)


@app.command()
def queues(as_json: JsonOpt = False, utc: UtcOpt = False) -> None:
    """Per destination: ready, in flight, retrying, dead, delivered, oldest pending message and delivery rate;
    then the dossiers past their intake deadline and those past their due date."""
    from rich.table import Table

    from hub.cliformat import NARROW, console, jsonable, print_json
    from hub.dossier.deadlines import overdue_intake, overdue_processing

    clock = _clock(utc)
    runtime = _runtime()
    try:
        overview = runtime.store.queue_overview()
        overdue = overdue_intake(runtime.store, runtime.settings)
        processing = overdue_processing(runtime.store, runtime.settings)
    except (ValueError, LookupError) as exc:
        raise _fail(f"the working calendar settings cannot be used: {exc}") from None
    finally:
        runtime.close()
    if as_json:
        print_json({
            "broker": runtime.describe_broker(), "store": runtime.describe_store(),
            "destinations": jsonable(overview, clock),
            "overdue_intake": {"working_hours": runtime.settings.intake_deadline_hours,
                               "dossiers": jsonable(overdue, clock)},
            "overdue_processing": {"dossiers": jsonable(processing, clock)},
        })  # fmt: skip
        return
    screen = console()
    if not overview:
        screen.print("no deliveries yet")
    else:
        narrow = screen.width < NARROW
        # Below 120 columns: one space between cells and each header as wide as its longest word (rich's own
        # sizing crops the table rather than wrap the headers); the destination takes the rest and folds.
        widths = {"ready": 5, "in flight": 6, "retrying": 8, "dead": 4, "delivered": 9, "oldest pending": 7,
                  "rate/min": 8}  # fmt: skip
        table = Table(title=f"Queues (broker {runtime.describe_broker()}, store {runtime.describe_store()})",
                      padding=(0, 1, 0, 0) if narrow else (0, 1))  # fmt: skip
        rest = screen.width - sum(widths.values()) - 2 * len(widths) - 3
        table.add_column("destination", overflow="fold", width=max(rest, 13) if narrow else None, no_wrap=not narrow)
        for column, width in widths.items():
            table.add_column(column, justify="right", width=width if narrow else None, no_wrap=not narrow)
        for q in overview:
            table.add_row(
                q.destination, str(q.queued), str(q.delivering), str(q.retrying),
                f"[bold red]{q.dead}[/]" if q.dead else "0", str(q.delivered),
                _age(q.oldest_pending_age_s), str(q.delivered_last_60s),
            )  # fmt: skip
        screen.print(table)
    _print_overdue(screen, overdue, runtime.settings, clock)
    _print_processing(screen, processing, clock)


def _print_processing(screen, processing: list, clock) -> None:
    """The "Past due date" section of `hub queues`: dossiers past their current due date, not finished."""
    from rich.table import Table

    if not processing:
        screen.print("Past due date (unfinished dossiers): none", markup=False)
        return
    table = Table(title=f"Past due date: {len(processing)} dossier(s) not finished")
    for column in ("dossier", "status", f"due ({clock.label})", "overdue (working h)", "reported by"):
        table.add_column(column, no_wrap=column == "dossier")
    for d in processing:
        table.add_row(
            d.dossier_code, "-" if d.status is None else str(d.status), clock.short(d.due_at),
            f"[bold red]{d.overdue_hours:.2f}[/]", esc(d.source or "-"),
        )  # fmt: skip
    screen.print(table)


def _print_overdue(screen, overdue: list, settings, clock) -> None:
    """The "Overdue intake (8 working hours)" section of `hub queues`."""
    from rich.table import Table

    hours = f"{settings.intake_deadline_hours:g}"
    if not overdue:
        screen.print(f"Overdue intake ({hours} working hours): none", markup=False)
        return
    table = Table(title=f"Overdue intake ({hours} working hours): {len(overdue)} dossier(s) still at status 1")
    for column in ("dossier", f"submitted ({clock.label})", f"deadline ({clock.label})", "overdue (working h)",
                   "channel", "reported by"):  # fmt: skip
        table.add_column(column, no_wrap=column == "dossier")
    for d in overdue:
        table.add_row(
            d.dossier_code, clock.short(d.submitted_at), clock.short(d.deadline),
            f"[bold red]{d.overdue_hours:.2f}[/]", "-" if d.channel is None else str(d.channel), d.source or "-",
        )  # fmt: skip
    screen.print(table)


@dead_app.command("list")
def dead_letters_list(
    destination: Annotated[str | None, typer.Option(help="Only this destination")] = None,
    include_replayed: Annotated[
        bool, typer.Option("--all", help="Also show dead letters already replayed or closed")
    ] = False,
    state: Annotated[
        DeadLetterStateOpt | None, typer.Option(help="open (the default), closed, replayed or all")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=5000, help="At most this many, oldest first")] = 500,
    after: Annotated[int | None, typer.Option(help="Only ids above this one (the next page)")] = None,
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """List dead letters: id, destination, message, reason, attempts and the last error (below 120 columns the
    type, dossier and times are left out: `hub dead-letters show ID` has everything). The title says how many
    match in all; `--after` the last id shown gives the next page."""
    from rich.table import Table

    from hub.cliformat import NARROW, console, jsonable, print_json

    clock = _clock(utc)
    runtime = _runtime()
    try:
        chosen = state.value if state else ("all" if include_replayed else "open")
        rows = runtime.store.dead_letters(destination=destination, state=chosen, limit=limit + 1, after=after)
        has_next, rows = len(rows) > limit, rows[:limit]
        total = runtime.store.dead_letter_count(destination=destination, state=chosen)
    finally:
        runtime.close()
    if as_json:
        print_json(jsonable(rows, clock))
        return
    screen = console()
    if not rows:
        screen.print("no dead letters")
        return
    more = f" of {total}" if total > len(rows) else ""
    more += f" (next page: --after {rows[-1].id})" if has_next else ""
    table = Table(title=f"{len(rows)}{more} dead letter(s)", title_justify="left")
    if screen.width < NARROW:
        # Widths set here: rich's own sizing crops a table whose columns cannot all shrink enough.
        fixed = {
            "id": max(2, *(len(str(d.id)) for d in rows)),
            "destination": max(11, *(len(d.destination) for d in rows)),
            "reason": max(10, *(len(d.reason) for d in rows)),
            "tries": 5,
        }
        rest = screen.width - sum(fixed.values()) - 6 * 2 - 7  # two padding spaces per cell, seven borders
        message_width = min(36, max(8, rest // 2))
        table.add_column("id", width=fixed["id"], justify="right")
        table.add_column("destination", width=fixed["destination"], overflow="fold")
        table.add_column("message id", width=message_width, overflow="fold")
        table.add_column("reason", width=fixed["reason"])
        table.add_column("tries", width=fixed["tries"], justify="right")
        table.add_column("last error", width=max(8, rest - message_width), overflow="fold")
        for d in rows:
            reason = d.reason + ("\n(replayed)" if d.replayed_at else "\n(closed)" if d.closed_at else "")
            error = " ".join(d.last_error.split())
            error = error if len(error) <= 60 else error[:59] + "…"  # a few lines at most; `show` has it all
            table.add_row(str(d.id), esc(d.destination), esc(d.message_id), esc(reason), str(d.attempts), esc(error))
        screen.print(table)
        screen.print("`hub dead-letters show ID`: one dead letter in full", markup=False)
        return
    for column in ("id", "destination", "message id", "type", "dossier", "reason", "tries", "last error",
                   f"replayed ({clock.label})", f"since ({clock.label})"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for d in rows:
        replayed = f"{clock.short(d.replayed_at)} by {d.replayed_by}" if d.replayed_at else ""
        if d.closed_at:
            replayed = f"closed {clock.short(d.closed_at)} by {d.closed_by}"
        table.add_row(
            str(d.id), esc(d.destination), esc(d.message_id), esc(d.message_type), esc(d.dossier_code or ""),
            esc(d.reason), str(d.attempts), esc(d.last_error[:120]), esc(replayed), clock.short(d.created_at),
        )  # fmt: skip
    screen.print(table)


@dead_app.command("show")
def dead_letters_show(
    dead_id: Annotated[int, typer.Argument(metavar="ID", help="Dead-letter id (see `hub dead-letters list`)")],
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """One dead letter in full: message, destination, reason, the whole last error, attempts, when, and who
    replayed it when. Exit 1 for an unknown id."""
    from hub.cliformat import console, jsonable, print_json

    clock = _clock(utc)
    runtime = _runtime()
    try:
        found = runtime.store.dead_letter(dead_id)
    finally:
        runtime.close()
    if found is None:
        raise _fail(f"no dead letter {dead_id} (see `hub dead-letters list --all`)", EXIT_REJECTED)
    if as_json:
        print_json(jsonable(found, clock))
        return
    d = found
    fields = {
        "dead letter": str(d.id),
        "message id": d.message_id,
        "type": d.message_type,
        "sender": d.sender,
        "destination": d.destination,
        "dossier": d.dossier_code or "-",
        "reason": d.reason,
        "attempts": str(d.attempts),
        "dead since": clock.full(d.created_at),
        "replayed": f"{clock.full(d.replayed_at)} by {d.replayed_by}" if d.replayed_at else "no",
        "closed": f"{clock.full(d.closed_at)} by {d.closed_by}: {d.close_reason}" if d.closed_at else "no",
        "delivery id": str(d.delivery_id),
        "last error": d.last_error or "-",
    }
    screen = console()
    for name, value in fields.items():
        screen.print(f"{name + ':':<13}{value}", markup=False, soft_wrap=False)


@dead_app.command("replay")
def dead_letters_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead-letter ids (see `hub dead-letters list`)")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every open dead letter")] = False,
    destination: Annotated[str | None, typer.Option(help="With --all: only this destination")] = None,
    actor: Annotated[str | None, typer.Option(help="Who replays (recorded); default: the current user")] = None,
) -> None:
    """Send dead letters again; each replay is recorded with who and when."""
    import getpass

    from hub.runtime import replay_dead_letters

    if bool(ids) == replay_all:
        raise _fail("give dead-letter ids or --all (not both)")
    runtime = _runtime()
    try:
        chosen = ids or [d.id for d in runtime.store.dead_letters(destination=destination)]
        if not chosen:
            out.print("no dead letters to replay")
            return
        who = actor or getpass.getuser()
        replayed, errors = replay_dead_letters(runtime, chosen, actor=who)
    finally:
        runtime.close()
    for item in replayed:
        out.print(f"replayed dead letter {item[0]}: message {item[1]} to {item[2]} (by {who})", markup=False)
    for dead_id, error in errors:
        err.print(f"dead letter {dead_id}: {error}", markup=False)
    if errors:
        raise typer.Exit(EXIT_REJECTED)


@dead_app.command("close")
def dead_letters_close(
    dead_id: Annotated[int, typer.Argument(metavar="ID", help="Dead-letter id (see `hub dead-letters list`)")],
    reason: Annotated[str, typer.Option(help="Why it is closed without resending (required; kept and audited)")],
    actor: ActorOpt = None,
) -> None:
    """Close a dead letter without resending it: who, when and why are recorded (and audited). A closed dead
    letter is not replayed; exit 1 if it is unknown, closed or replayed already, or the reason is blank."""
    from hub.errors import StoreError
    from hub.services import actions

    runtime = _runtime()
    try:
        closed = actions.close_dead_letter(runtime, dead_id, reason=reason, actor=_cli_actor(actor))
    except (StoreError, ValueError) as exc:
        raise _fail(str(exc), EXIT_REJECTED) from None
    finally:
        runtime.close()
    out.print(f"closed dead letter {closed.id}: message {closed.message_id} to {closed.destination} "
              f"(by {closed.closed_by}: {closed.close_reason})", markup=False)  # fmt: skip


deliveries_app = typer.Typer(help="Act on deliveries waiting for a retry.", no_args_is_help=True)
app.add_typer(deliveries_app, name="deliveries")


@deliveries_app.command("retry-now")
def deliveries_retry_now(
    message: Annotated[str | None, typer.Option("--message", help="Every waiting delivery of this message id")] = None,
    sender: Annotated[str | None, typer.Option(help="The message's sender (ids are unique per sender)")] = None,
    destination: Annotated[
        str | None, typer.Option("--destination", help="Every waiting delivery to this destination")
    ] = None,
    actor: ActorOpt = None,
) -> None:
    """Skip the backoff: deliveries waiting for a retry are sent now, once (the copy still waiting in the
    broker is acknowledged without a second call). Audited. Exit 1 if the message has nothing waiting."""
    from hub.errors import StoreError, UnknownDestinationError
    from hub.services import actions

    if (message is None) == (destination is None):
        raise _fail("give --message ID or --destination CODE (one of them)")
    runtime = _runtime()
    try:
        due = actions.retry_now(runtime, message_id=message, sender=sender, destination=destination,
                                actor=_cli_actor(actor))  # fmt: skip
    except (StoreError, UnknownDestinationError) as exc:
        raise _fail(str(exc), EXIT_REJECTED) from None
    finally:
        runtime.close()
    if not due:
        out.print(f"no delivery to {destination} waits for a retry", markup=False)
    for p in due:
        out.print(f"retrying now: delivery {p.delivery_id}, message {p.message_id} to {p.destination}", markup=False)


destinations_app = typer.Typer(help="Pause and resume calling a destination.", no_args_is_help=True)
app.add_typer(destinations_app, name="destinations")


@destinations_app.command("pause")
def destinations_pause(
    code: Annotated[str, typer.Argument(help="The destination connector's code")],
    reason: Annotated[str, typer.Option(help="Why (required; kept and audited)")],
    actor: ActorOpt = None,
) -> None:
    """Stop calling a destination: workers see it within seconds; its queued work waits, nothing is lost and no
    attempt is counted. Audited. Exit 1 if it is not routed, paused already, or the reason is blank."""
    from hub.errors import StoreError, UnknownDestinationError
    from hub.services import actions

    runtime = _runtime()
    try:
        held = actions.pause(runtime, code, reason=reason, actor=_cli_actor(actor))
    except (StoreError, UnknownDestinationError, ValueError) as exc:
        raise _fail(str(exc), EXIT_REJECTED) from None
    finally:
        runtime.close()
    out.print(f"paused {held.destination} (by {held.paused_by}: {held.reason})", markup=False)


@destinations_app.command("resume")
def destinations_resume(
    code: Annotated[str, typer.Argument(help="The destination connector's code")],
    actor: ActorOpt = None,
) -> None:
    """Call a paused destination again: its waiting work flows. Audited. Exit 1 if it is not paused."""
    from hub.errors import StoreError
    from hub.services import actions

    runtime = _runtime()
    try:
        ended = actions.resume(runtime, code, actor=_cli_actor(actor))
    except StoreError as exc:
        raise _fail(str(exc), EXIT_REJECTED) from None
    finally:
        runtime.close()
    out.print(f"resumed {ended.destination} (paused by {ended.paused_by}: {ended.reason})", markup=False)


@destinations_app.command("paused")
def destinations_paused(as_json: JsonOpt = False, utc: UtcOpt = False) -> None:
    """The paused destinations: who paused each, when and why."""
    from hub.cliformat import console, jsonable, print_json

    clock = _clock(utc)
    runtime = _runtime()
    try:
        paused = list(runtime.store.paused_destinations().values())
    finally:
        runtime.close()
    if as_json:
        print_json(jsonable(paused, clock))
        return
    screen = console()
    if not paused:
        screen.print("no destination is paused")
    for p in paused:
        screen.print(f"{p.destination}: paused {clock.full(p.paused_at)} by {p.paused_by}: {p.reason}", markup=False)


@app.command()
def bench(
    broker: Annotated[str, typer.Option(help="`embedded` or an amqp:// URL")] = "embedded",
    messages: Annotated[int, typer.Option(min=1, help="Envelopes to send end to end")] = 2000,
    workers: Annotated[
        int | None,
        typer.Option(
            help="`hub worker` processes delivering to the sink [default: 2; with --via http 1, as the API "
            "processes need the CPU and one worker takes larger batches]",
            show_default=False,
        ),
    ] = None,
    window: Annotated[int, typer.Option(help="Most accepted-but-undelivered messages at once (not paced)")] = 250,
    batch: Annotated[int, typer.Option(help="Envelopes accepted per store transaction")] = 50,
    database: Annotated[str | None, typer.Option(help="Store URL (default: a SQLite file in a temp folder)")] = None,
    naive_messages: Annotated[int, typer.Option(help="Packets timed through the naive chain")] = 1000,
    acceptors: Annotated[int, typer.Option(help="Load processes (--via direct: they accept, as the API would)")] = 2,
    prefetch: Annotated[int, typer.Option(help="Deliveries each worker takes from the queue at once")] = 32,
    via: Annotated[
        str | None,
        typer.Option(
            help="`direct` (accept in the load processes) or `http` (POST to `hub serve`) [default: http with a "
            "postgresql:// --database and an amqp:// --broker, the production shape; else direct]",
            show_default=False,
        ),
    ] = None,
    serve_workers: Annotated[int, typer.Option(help="With --via http: uvicorn worker processes")] = 2,
    payload_bytes: Annotated[
        int, typer.Option(min=0, help="Pad every envelope (a valid dossier.sync) to about this many bytes; 0: ~4 KB")
    ] = 0,
    rate: Annotated[
        float | None,
        typer.Option(min=0.1, help="Offer this many msg/s at a steady pace (latency at a given load) instead of as "
                     "many as the window lets; the naive chain is then not timed", show_default=False),
    ] = None,
    soak: Annotated[
        bool,
        typer.Option(help="Memory soak: paced (--rate, default 500 msg/s), envelopes signed as they are sent, the "
                     "resident memory of every hub process sampled (--rss-every) into --rss-csv; meant for "
                     "--messages 1000000 (about 30 min)"),
    ] = False,
    rss_every: Annotated[float, typer.Option(min=0.1, help="Seconds between memory samples")] = 10.0,
    rss_csv: Annotated[
        Path | None,
        typer.Option(help="Write the memory samples here (elapsed_s, delivered, kind, pid, rss_bytes) [default with "
                     "--soak: var/bench/rss-<time>.csv]", show_default=False),
    ] = None,
) -> None:
    """Measure the exchange end to end and against a naive single-process chain.

    Prints a readable report with progress, and as its last line one JSON object: messages, delivered, lost,
    duplicates, seconds, throughput_msg_s, p50_ms, p99_ms (accept → delivered), naive_msg_s, ratio_vs_naive,
    broker, store, envelope_bytes, shape and production_shape (HTTP + RabbitMQ + PostgreSQL), cpu_us_per_message
    (µs of CPU per message of each process kind: api, worker, load, sink, broker, database, total; null: not
    measured, cpu_notes say why), offered_rate / achieved_rate, store_bytes_per_message, broker_size, with --via
    http healthz_p50_ms / healthz_p99_ms (`/healthz` timed while the load runs), and with --soak or --rss-csv rss
    (per process kind: MB after the warm-up, the first 10 % of the run, at the end, and growth_pct). Exit 1 when
    a message was lost or duplicated.
    """
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hub.devtools import bench as benchmark

    @contextlib.contextmanager
    def progress_factory(label: str, total: int):
        with Progress(
            TextColumn(f"{label:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=False,
        ) as progress:  # fmt: skip
            task = progress.add_task(label, total=total)
            yield lambda n: progress.advance(task, n)

    if via is None:
        production = (database or "").startswith("postgres") and broker.startswith("amqp")
        via = "http" if production else "direct"
    if via not in ("direct", "http"):
        raise _fail(f"--via must be `direct` or `http`, not {via!r}")
    workers = workers if workers is not None else (1 if via == "http" else 2)
    err.print(f"Lienthong benchmark: {messages} messages, broker {broker}, {workers} worker processes, via {via}")
    result = benchmark.run(
        broker=broker, messages=messages, workers=workers, window=window, batch=batch, database_url=database,
        naive_messages=naive_messages, acceptors=acceptors, prefetch=prefetch, via=via, serve_workers=serve_workers,
        payload_bytes=payload_bytes, rate=rate, soak=soak, rss_every_s=rss_every, rss_csv=rss_csv,
        report=lambda line: err.print(line, markup=False), progress_factory=progress_factory,
    )  # fmt: skip
    for line in benchmark.readable(result):
        err.print(line, markup=False)
    sys.stdout.write(benchmark.as_json(result) + "\n")
    if result.lost or result.duplicates:
        raise typer.Exit(EXIT_REJECTED)


# ---------------------------------------------------------------- connectors


@contextlib.contextmanager
def _registry():
    """The connector registry on the configured store (the broker is not needed, so it is not opened)."""
    from hub.config import get_settings
    from hub.registry import Registry
    from hub.runtime import open_store

    settings = get_settings()
    try:
        store = open_store(settings)
    except LienthongError as exc:
        raise _fail(str(exc)) from None
    try:
        yield Registry(store, hub_code=settings.hub_code)
    finally:
        store.close()


def _actor(actor: str | None) -> str:
    import getpass

    return actor or getpass.getuser()


def _unknown_connector(code: str) -> typer.Exit:
    return _fail(f"no connector {code!r} is registered (see `hub connector list`)")


@contextlib.contextmanager
def _known_connector(code: str) -> Iterator[None]:
    """Turns the registry's UnknownConnectorError into the CLI's one message and exit code for that case."""
    from hub.errors import UnknownConnectorError

    try:
        yield
    except UnknownConnectorError:
        raise _unknown_connector(code) from None


CodeArg = Annotated[str, typer.Argument(metavar="CODE", help="The connector's agency code")]
ActorOpt = Annotated[str | None, typer.Option(help="Who makes the change (recorded); default: the current user")]


@connector_app.command("add")
def connector_add(
    file: Annotated[Path, typer.Argument(metavar="FILE.yaml", help="Connector declaration (see deploy/connectors/)")],
    actor: ActorOpt = None,
) -> None:
    """Validate a connector file and register it (or update the connector with its code).

    Every problem in the file is reported at once (exit 1). On creation the connector's API key is printed,
    once: it is stored only as a hash.
    """
    from hub.errors import SpecInvalidError
    from hub.registry import load_spec

    try:
        spec = load_spec(file)
        with _registry() as registry:
            connector, key = registry.add(spec, actor=_actor(actor))
    except SpecInvalidError as exc:
        _print_issues(str(file), exc.issues)
        err.print(f"{file}: {len(exc.issues)} problem(s); connector not registered", markup=False)
        raise typer.Exit(EXIT_REJECTED) from None
    state = "" if connector.enabled else " (disabled)"
    if key is None:
        out.print(f"updated connector {connector.code} ({connector.kind}, {connector.name}){state}", markup=False)
        return
    out.print(f"registered connector {connector.code} ({connector.kind}, {connector.name}){state}", markup=False)
    out.print(f"API key: {key}", markup=False)
    err.print(
        "warning: this API key is shown only now and stored only as a hash; give it to the partner over a "
        "secure channel (`hub connector rotate-key` issues a new one)",
        markup=False,
    )


def _connector_doc(c, clock, *, full: bool) -> dict:
    """What ``connector list|show --json`` print of one connector (never its key nor a credential)."""
    doc = {
        "code": c.code, "kind": c.kind, "name": c.name, "enabled": c.enabled, "sends": list(c.sends),
        "receives": list(c.receives), "endpoint": c.endpoint, "cert_expiry_days": c.cert_expiry_days(),
    }  # fmt: skip
    if full:
        doc |= {
            "api_key_prefix": c.api_key_prefix,
            "created_at": jsonable_time(c.created_at, clock),
            "updated_at": jsonable_time(c.updated_at, clock),
            "spec": _public_spec(c),
            "certificates": [
                {"fingerprint": i.fingerprint, "subject": i.subject, "not_before": jsonable_time(i.not_before, clock),
                 "not_after": jsonable_time(i.not_after, clock), "days_left": i.days_left()}
                for i in c.certificates
            ],
        }  # fmt: skip
    return doc


def jsonable_time(at, clock) -> str | None:
    return None if at is None else clock.local(at).isoformat()


def _public_spec(c) -> dict:
    spec = c.spec.public()
    if spec.get("code_pattern") is None:
        spec.pop("code_pattern", None)
    spec["mapping"] = {t: c.spec.profile_for(t) for t in dict.fromkeys((*c.sends, *c.receives))}
    return spec


@connector_app.command("list")
def connector_list(as_json: JsonOpt = False) -> None:
    """Registered connectors: code, kind, name, granted types, endpoint, state and certificate expiry (below 120
    columns the granted types are left out: `hub connector show CODE` has them)."""
    from rich.table import Table

    from hub.cliformat import NARROW, console, print_json

    with _registry() as registry:
        rows = registry.list()
    if as_json:
        print_json([_connector_doc(c, _clock(False), full=False) for c in rows])
        return
    screen = console()
    if not rows:
        screen.print("no connectors registered (add one with `hub connector add FILE.yaml`)")
        return
    narrow = screen.width < NARROW
    table = Table(title=f"{len(rows)} connector(s)")
    columns = ("code", "kind", "name", "endpoint", "enabled", "cert days") if narrow else (
        "code", "kind", "name", "sends", "receives", "endpoint", "enabled", "cert days")  # fmt: skip
    for column in columns:
        table.add_column(column, no_wrap=column in ("code", "kind"), overflow="fold",
                         justify="right" if column == "cert days" else "left")  # fmt: skip
    for c in rows:
        days = c.cert_expiry_days()
        cells = {
            "code": esc(c.code), "kind": esc(c.kind), "name": esc(c.name), "sends": "\n".join(c.sends) or "-",
            "receives": "\n".join(c.receives) or "-", "endpoint": esc(c.endpoint or "-"),
            "enabled": "yes" if c.enabled else "[bold red]no[/]", "cert days": "-" if days is None else str(days),
        }  # fmt: skip
        table.add_row(*(cells[column] for column in columns))
    screen.print(table)


@connector_app.command("show")
def connector_show(code: CodeArg, as_json: JsonOpt = False, utc: UtcOpt = False) -> None:
    """One connector in full: its declaration, certificates, key id and the latest registry changes."""
    import yaml

    from hub.security import keys

    clock = _clock(utc)
    with _registry() as registry:
        connector = registry.get(code)
        if connector is None:
            raise _unknown_connector(code)
        history = registry.audit(code, limit=10)
    c = connector
    if as_json:
        from hub.cliformat import jsonable, print_json

        doc = _connector_doc(c, clock, full=True)
        doc["recent_changes"] = [
            {"at": jsonable_time(e.at, clock), "action": e.action, "actor": e.actor} for e in history
        ]
        print_json(jsonable(doc, clock))
        return
    out.print(f"{c.code}  {c.name}  ({c.kind}, {'enabled' if c.enabled else 'DISABLED'})", markup=False)
    out.print(f"API key id: {c.api_key_prefix or '-'} (the key itself is never stored)", markup=False)
    out.print(f"created {clock.full(c.created_at)}, updated {clock.full(c.updated_at)}", markup=False)
    out.print(yaml.safe_dump(_public_spec(c), sort_keys=False, allow_unicode=True).rstrip(), markup=False)
    out.print(f"certificates: {len(c.certificates) or 'none'}", markup=False)
    for info in c.certificates:
        cert = info.certificate
        out.print(
            f"  - {keys.common_name(cert)}  SHA-256 {info.fingerprint}  valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d} ({info.days_left()} days left)",
            markup=False,
        )
    if history:
        out.print(f"recent changes ({clock.label}):", markup=False)
        for entry in history:
            out.print(f"  {clock.short(entry.at)}  {entry.action:<18} by {entry.actor}", markup=False)


@connector_app.command("disable")
def connector_disable(code: CodeArg, actor: ActorOpt = None) -> None:
    """Disable a connector: its API key stops working and nothing more is routed to it."""
    with _registry() as registry, _known_connector(code):
        registry.disable(code, actor=_actor(actor))
    out.print(f"disabled connector {code}", markup=False)


@connector_app.command("enable")
def connector_enable(code: CodeArg, actor: ActorOpt = None) -> None:
    """Enable a connector again."""
    with _registry() as registry, _known_connector(code):
        registry.enable(code, actor=_actor(actor))
    out.print(f"enabled connector {code}", markup=False)


@connector_app.command("rotate-key")
def connector_rotate_key(code: CodeArg, actor: ActorOpt = None) -> None:
    """Issue a new API key; the old one stops working at once. The new key is shown only now."""
    with _registry() as registry, _known_connector(code):
        key = registry.rotate_key(code, actor=_actor(actor))
    out.print(f"new API key for {code}: {key}", markup=False)
    err.print("warning: shown only now and stored only as a hash; the previous key no longer works", markup=False)


@connector_app.command("audit")
def connector_audit(
    code: Annotated[str | None, typer.Argument(metavar="[CODE]", help="Only this connector")] = None,
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """Registry changes (who, when, what), oldest first."""
    import json

    clock = _clock(utc)
    with _registry() as registry:
        entries = registry.audit(code)
    if as_json:
        from hub.cliformat import jsonable, print_json

        print_json(jsonable(entries, clock))
        return
    if not entries:
        out.print("no registry changes recorded")
        return
    out.print(f"registry changes (times {clock.label}):", markup=False)
    for e in entries:
        changed = _changed_keys(e.before, e.after)
        what = f" ({', '.join(changed)})" if changed else ""
        out.print(f"{clock.local(e.at):%Y-%m-%d %H:%M:%S}  {e.code}  {e.action}{what}  by {e.actor}", markup=False)
        if e.action == "rotate-key":
            out.print(f"    {json.dumps(e.before)} -> {json.dumps(e.after)}", markup=False)


def _changed_keys(before: dict | None, after: dict | None) -> list[str]:
    if before is None or after is None:
        return []
    flat_before = {**before.get("spec", {}), **{k: v for k, v in before.items() if k != "spec"}}
    flat_after = {**after.get("spec", {}), **{k: v for k, v in after.items() if k != "spec"}}
    return sorted(k for k in flat_before.keys() | flat_after.keys() if flat_before.get(k) != flat_after.get(k))


@connector_app.command("check")
def connector_check(
    code: CodeArg,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the endpoint's answer")] = 3.0,
    as_json: JsonOpt = False,
) -> None:
    """Onboarding check: example packets through verification, validation and mapping; certificates; a harmless
    OPTIONS request to the endpoint. Prints what passed (✓), what to look at (!) and what must be fixed (✗);
    exit 0 only when nothing must be fixed (--json: the same items and exit code)."""
    from hub.config import get_settings
    from hub.registry import run_check
    from hub.runtime import trust_store

    settings = get_settings()
    with _registry() as registry, _known_connector(code):
        report = run_check(registry, code, trust=trust_store(settings, registry.store), probe_timeout_s=timeout)
    if as_json:
        from hub.cliformat import print_json

        print_json({
            "code": code, "ok": report.ok, "failures": len(report.failures), "warnings": len(report.warnings),
            "items": [{"status": i.status, "area": i.area, "message": i.message} for i in report.items],
        })  # fmt: skip
        raise typer.Exit(EXIT_OK if report.ok else EXIT_REJECTED)
    out.print(f"Onboarding check of connector {code}", markup=False)
    for item in report.items:
        out.print(f"  {item.mark} [{item.area}] {item.message}", markup=False)
    if report.ok:
        warnings = f" ({len(report.warnings)} warning(s))" if report.warnings else ""
        out.print(f"{code}: ready{warnings}", markup=False)
        return
    out.print(f"{code}: {len(report.failures)} problem(s) must be fixed", markup=False)
    raise typer.Exit(EXIT_REJECTED)


calendar_app = typer.Typer(help="The working calendar deadlines are counted on.", no_args_is_help=True)
app.add_typer(calendar_app, name="calendar")


class CalendarLangOpt(StrEnum):
    """`hub calendar show --lang`: the language of the public holidays' names."""

    vi = "vi"
    en = "en"


@calendar_app.command("show")
def calendar_show(
    year: Annotated[int, typer.Argument(metavar="YEAR", help="The year, e.g. 2026", min=1900, max=2200)],
    lang: Annotated[
        CalendarLangOpt, typer.Option("--lang", help="Language of the public holidays' names")
    ] = CalendarLangOpt.vi,
    as_json: JsonOpt = False,
) -> None:
    """The year's non-working days besides plain weekends: the country's public holidays (the holidays package,
    LIENTHONG_HOLIDAYS_COUNTRY) and the configured days off (LIENTHONG_HOLIDAYS, LIENTHONG_CALENDAR_FILE), then
    the weekend days worked (decreed, LIENTHONG_EXTRA_WORKING_DAYS). Exit 2 when the calendar settings cannot be
    used."""
    import dataclasses

    from rich.table import Table

    from hub.cliformat import console, print_json
    from hub.config import get_settings
    from hub.dossier.workcalendar import calendar_from_settings

    settings = get_settings()
    try:
        calendar = calendar_from_settings(settings)
        calendar = dataclasses.replace(calendar, language="vi" if lang is CalendarLangOpt.vi else "en_US")
        days = calendar.year(year)
    except (ValueError, LookupError) as exc:
        raise _fail(f"the working calendar settings cannot be used: {exc}") from None
    off = [d for d in days if not d.working]
    worked = [d for d in days if d.working]
    weekdays = _weekdays(calendar.days)
    hours = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in calendar.hours)
    if as_json:

        def item(d: Any) -> dict[str, str]:
            return {"date": d.day.isoformat(), "weekday": d.weekday, "name": d.name, "source": d.source}

        print_json({
            "year": year, "country": calendar.country, "timezone": calendar.timezone, "working_weekdays": weekdays,
            "working_hours": hours, "non_working_days": [item(d) for d in off],
            "working_weekend_days": [item(d) for d in worked],
        })  # fmt: skip
        return
    screen = console()
    country = f"{calendar.country} (holidays package)" if calendar.country else "none"
    screen.print(f"Working calendar {year}: {weekdays} {hours} ({calendar.timezone})", markup=False)
    screen.print(f"Public holidays: {country}; source 'configured': LIENTHONG_HOLIDAYS, LIENTHONG_EXTRA_WORKING_DAYS, "
                 "LIENTHONG_CALENDAR_FILE", markup=False)  # fmt: skip
    for title, listed in ((f"Non-working days {year} besides other weekends: {len(off)}", off),
                          (f"Weekend days worked {year}: {len(worked)}", worked)):  # fmt: skip
        if not listed:
            screen.print(f"{title}: none", markup=False)
            continue
        table = Table(title=title, title_justify="left", padding=(0, 1, 0, 0))
        table.add_column("date", no_wrap=True)
        table.add_column("day", no_wrap=True)
        table.add_column("name", overflow="fold")
        table.add_column("source", no_wrap=True)
        for d in listed:
            table.add_row(d.day.isoformat(), d.weekday, esc(d.name), esc(d.source))
        screen.print(table)


DAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _weekdays(days: Any) -> str:
    """Weekday numbers as ``Mon-Fri`` / ``Mon-Wed,Sat``."""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(DAY_LABELS[r[0]] if len(r) == 1 else f"{DAY_LABELS[r[0]]}-{DAY_LABELS[r[-1]]}" for r in runs)


dossier_app = typer.Typer(help="Look at dossiers across systems.", no_args_is_help=True)
app.add_typer(dossier_app, name="dossier")


@dossier_app.command("show")
def dossier_show(
    code: Annotated[str, typer.Argument(metavar="CODE", help="The dossier code")],
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """A dossier across systems: its current status, every status update (applied or not) in time order and the
    messages logged for it. Exit 1 for a dossier the hub knows nothing of."""
    from rich.table import Table

    from hub.cliformat import console, jsonable, print_json

    clock = _clock(utc)
    with _registry() as registry:
        record = registry.store.dossier(code)
        updates = sorted(registry.store.timeline(code), key=lambda u: (u.at, u.id))
        messages = sorted(registry.store.dossier_messages(code), key=lambda m: (m.received_at, m.message_pk))
        due_at = registry.store.due_date(code)[0]
    if record is None and not updates and not messages:
        raise _fail(f"no dossier {code} is known", EXIT_REJECTED)
    if as_json:
        print_json({
            "dossier_code": code,
            "status": None if record is None else record.status,
            "status_at": None if record is None else jsonable(record.status_at, clock),
            "due_at": jsonable(due_at, clock),
            "updates": jsonable(updates, clock),
            "messages": jsonable(messages, clock),
        })  # fmt: skip
        return
    screen = console()
    status = "no status applied" if record is None else f"status {record.status} since {clock.full(record.status_at)}"
    due = "" if due_at is None else f"; due {clock.full(due_at)}"
    screen.print(f"dossier {code}: {status}{due}", markup=False)
    if updates:
        table = Table(title=f"{len(updates)} status update(s)", title_justify="left")
        for column in (f"at ({clock.label})", "status", "outcome", "source", "reason"):
            table.add_column(column, no_wrap=column.startswith("at") or column == "status", overflow="fold")
        for u in updates:
            reason = (u.reason or "") + _due_moved(u.detail, clock)
            table.add_row(clock.short(u.at), str(u.status), esc(u.outcome), esc(u.source), esc(reason))
        screen.print(table)
    if messages:
        table = Table(title=f"{len(messages)} message(s)", title_justify="left")
        for column in (f"received ({clock.label})", "type", "from → to", "message id", "status"):
            table.add_column(column, no_wrap=column.startswith("received"), overflow="fold")
        for m in messages:
            table.add_row(clock.short(m.received_at), esc(m.message_type), esc(f"{m.sender} → {m.receiver}"),
                          esc(m.message_id), esc(m.status))  # fmt: skip
        screen.print(table)


def _due_moved(detail: Any, clock: Any) -> str:
    """`` (due date A → B)`` for a timeline entry that moved the dossier's due date, else ``""``."""
    from hub.store.due_dates import due_change

    moved = due_change(detail)
    return "" if moved is None else f" (due date {clock.short(moved[0])} → {clock.short(moved[1])})"


@dossier_app.command("correct")
def dossier_correct(
    code: Annotated[str, typer.Argument(metavar="CODE", help="The dossier code")],
    status: Annotated[int, typer.Option("--status", min=1, max=10, help="The dossier's status after it (1..10)")],
    reason: Annotated[str, typer.Option(help="Why (required; kept on the timeline, audited, sent to the partners)")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """Correct a dossier's status: the only way past a terminal status (3, 7, 10) or back from 9. Recorded on its
    timeline with who, why, before and after, audited (dossier.correct), and reported as a dossier.status to every
    connector that receives one (the province, the national portal). Exit 1 for an unknown dossier, the status it
    has already, or a blank reason or one holding a control character. A correction is applied after the
    dossier's last update, even one dated ahead."""
    from hub.cliformat import jsonable, print_json
    from hub.errors import CorrectionRefusedError
    from hub.services.corrections import correct_status

    runtime = _runtime()
    try:
        done = correct_status(runtime, code, status=status, reason=reason, actor=_cli_actor(actor))
    except CorrectionRefusedError as exc:
        raise _fail(f"{exc} [{exc.rule}]", EXIT_REJECTED) from None
    finally:
        runtime.close()
    if as_json:
        print_json(jsonable(done, _clock(utc)))
        return
    sent = ", ".join(done.destinations) or "no connector receives dossier.status"
    out.print(f"dossier {done.dossier_code}: status {done.status_before} -> {done.status} (corrected by "
              f"{done.corrected_by}: {done.reason}); message {done.message_id or '-'} to {sent}",
              markup=False)  # fmt: skip


# ---------------------------------------------------------------- the message log

messages_app = typer.Typer(help="Browse the message log.", no_args_is_help=True)
app.add_typer(messages_app, name="messages")


def _cli_time(value: str | None, option: str, clock: Any) -> datetime | None:
    """An ISO 8601 date or time; without an offset it is in the shown zone (the calendar's, or UTC with --utc)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=clock.zone)).astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: a time at the very edge of the calendar
        raise _fail(f"{option}: {value!r} is not an ISO 8601 time (e.g. 2026-12-02T09:15)") from None


@messages_app.command("list")
def messages_list(
    since: Annotated[str | None, typer.Option(help="Received at or after (ISO 8601; local time if no offset)")] = None,
    until: Annotated[str | None, typer.Option(help="Received before (ISO 8601; local time if no offset)")] = None,
    sender: Annotated[str | None, typer.Option(help="Sender code")] = None,
    receiver: Annotated[str | None, typer.Option(help="A destination the message was routed to")] = None,
    message_type: Annotated[str | None, typer.Option("--type", "-t", help="Message type, e.g. dossier.sync")] = None,
    state: Annotated[str | None, typer.Option(help="accepted, queued, delivering, retrying, delivered or dead")] = None,
    dossier: Annotated[str | None, typer.Option(help="Dossier code")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows per page")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next cursor a previous page printed")] = None,
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """List logged messages, newest first, with the same filters as `GET /api/v1/messages`; prints the total and
    the cursor of the next page. Exit 2 for a bad filter or cursor."""
    from rich.table import Table

    from hub.cliformat import NARROW, console, jsonable, print_json
    from hub.errors import InvalidCursorError
    from hub.store.message_log import MESSAGE_STATES, MessageFilter

    clock = _clock(utc)
    if state and state not in MESSAGE_STATES:
        raise _fail(f"--state: {state!r} is not one of {', '.join(MESSAGE_STATES)}")
    flt = MessageFilter(since=_cli_time(since, "--since", clock), until=_cli_time(until, "--until", clock),
                        sender=sender, receiver=receiver, message_type=message_type, state=state,
                        dossier=dossier)  # fmt: skip
    with _registry() as registry:
        try:
            page = registry.store.message_log(flt, cursor=cursor, limit=limit)
        except InvalidCursorError as exc:
            raise _fail(f"--cursor: {exc.detail}") from None
    if as_json:
        print_json({"items": jsonable(list(page.items), clock), "total": page.total,
                    "total_exact": page.total_exact, "next_cursor": page.next_cursor})  # fmt: skip
        return
    screen = console()
    total = f"{page.total:,}" + ("" if page.total_exact else "+")
    if not page.items:
        screen.print(f"no message matches (total {total})", markup=False)
        return
    table = Table(title=f"{len(page.items)} of {total} message(s), newest first", title_justify="left")
    wide = screen.width >= NARROW
    columns = [f"received ({clock.label})", "message id", "type", "from → to", "status"] + (["dossier"] if wide else [])
    for column in columns:
        table.add_column(column, no_wrap=column.startswith("received") or column == "status", overflow="fold")
    for m in page.items:
        routed = f"{m.sender} → {', '.join(m.destinations) or '-'}"
        row = [clock.short(m.received_at), m.message_id, m.message_type, routed, m.status]
        table.add_row(*map(esc, row), *([esc(m.dossier_code or "")] if wide else []))
    screen.print(table)
    if page.next_cursor:
        screen.print(f"next page: --cursor {page.next_cursor}", markup=False)


log_app = typer.Typer(
    help="Retention of the message log: archive old final messages to a compressed, digest-listed file, and verify "
    "such a file.",
    no_args_is_help=True,
)
app.add_typer(log_app, name="log")


@contextlib.contextmanager
def _progress_bar(label: str, total: int) -> Iterator[Any]:
    """A progress bar on standard error (a long archive run shows where it is)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"{label:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  transient=False, disable=not err.is_terminal) as progress:  # fmt: skip
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@log_app.command("archive")
def log_archive(
    before: Annotated[
        str,
        typer.Option(help="Archive the final messages received before this date or time (ISO 8601; local time if no "
                     "offset), e.g. 2026-01-01", show_default=False),
    ],
    out_path: Annotated[
        Path | None,
        typer.Option("--out", help="The archive file to write (gzip of JSON lines; its manifest is written beside "
                     "it as <file>.manifest.jsonl) [default: <data dir>/archive/message-log-before-<DATE>-<now>"
                     ".jsonl.gz]", show_default=False),
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who archives, for the audit log [default: current user]")] = None,
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """Move the message log's final messages received before DATE to a compressed file with a digest list.

    Final: no delivery queued, being delivered or waiting for a retry, and no open dead letter (replay or close it
    first). The latest dossier.sync of a dossier not finished (3, 7, 10) and the payment.request of an unsettled
    payment stay (the hub still reads them). The file and its manifest (SHA-256 of each record and of the file)
    are written, synced and verified before anything is deleted; each deleting transaction is audited
    (message_log.archive). A second run over the same range archives nothing. Exit 0 done (or nothing to
    archive), 2 bad DATE, existing file, or an archive that did not verify (then nothing was deleted). See
    docs/message-log-archive.md.
    """
    from hub.cliformat import jsonable, print_json
    from hub.config import get_settings
    from hub.runtime import open_store
    from hub.services import log_archive as archiving

    clock = _clock(utc)
    when = _cli_time(before, "--before", clock)
    assert when is not None
    if when > datetime.now(UTC):
        raise _fail(f"--before: {before!r} is in the future (only what is already old is archived)")
    settings = get_settings()
    target = out_path or archiving.default_path(settings.data_dir, when, datetime.now(UTC))
    try:
        store = open_store(settings)
    except LienthongError as exc:
        raise _fail(str(exc)) from None
    try:
        result = archiving.archive(store, before=when, out=target, actor=_cli_actor(actor).name,
                                   progress=_progress_bar)  # fmt: skip
    except LienthongError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        print_json({"before": jsonable(result.before, clock), "archive": str(result.path) if result.path else None,
                    "manifest": str(result.manifest) if result.manifest else None, "records": result.records,
                    "deleted": result.deleted, "kept_changed": result.kept_changed,
                    "file_sha256": result.file_sha256})  # fmt: skip
        return
    if result.path is None:
        out.print(f"nothing to archive: no final message received before {clock.full(when)}", markup=False)
        return
    out.print(f"archived {result.records:,} message(s) received before {clock.full(when)} to {result.path}\n"
              f"  sha256 {result.file_sha256}; manifest {result.manifest}\n"
              f"  deleted {result.deleted:,} from the store", markup=False)  # fmt: skip
    if result.kept_changed:
        out.print(f"  kept {result.kept_changed:,} that changed after they were archived (archived again by a later "
                  "run)", markup=False)  # fmt: skip


@log_app.command("verify")
def log_verify(
    path: Annotated[Path, typer.Argument(help="The archive file (its manifest is read from beside it)")],
    manifest: Annotated[
        Path | None, typer.Option(help="The manifest [default: <file>.manifest.jsonl]", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an archive of the message log against its manifest: the file's SHA-256, then each record's.

    Exit 0 intact, 1 it differs (each differing record named by message id, sender and store key), 2 the file or
    its manifest cannot be read.
    """
    from hub.cliformat import print_json
    from hub.errors import ArchiveMismatchError
    from hub.services import log_archive as archiving

    try:
        result = archiving.verify(path, manifest)
    except ArchiveMismatchError as exc:
        if as_json:
            print_json({"archive": str(path), "ok": False, "differences": exc.differences})
        else:
            err.print(f"error: {path} differs from its manifest:", markup=False)
            for difference in exc.differences:
                err.print(f"  {difference}", markup=False)
        raise typer.Exit(EXIT_REJECTED) from None
    except LienthongError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print_json({"archive": str(result.path), "manifest": str(result.manifest), "ok": True,
                    "records": result.records, "file_sha256": result.file_sha256})  # fmt: skip
        return
    out.print(f"intact: {result.records:,} record(s), sha256 {result.file_sha256} ({result.manifest})", markup=False)


@app.command()
def simulate(
    trust: Annotated[
        Path | None,
        typer.Option(help="CA or certificate (file or folder) the envelope partners verify the hub's signature with"),
    ] = None,
    port_offset: Annotated[int, typer.Option(help="Added to every default port (a second set beside the first)")] = 0,
    portal_variant: Annotated[
        str, typer.Option(help="The national portal's profile: dvcqg/opencps (session API) or dvcqg/proxy")
    ] = "dvcqg/opencps",
    portal_dstcode: Annotated[
        str | None, typer.Option(help="The dstcode header the portal requires (dvcqg/opencps; default: a demo value)")
    ] = None,
) -> None:
    """Run the eight partner simulators on 127.0.0.1 until Ctrl-C/SIGTERM: provincial system, national portal,
    population database (SOAP), postal service, payment platform, ministry software (XML steps), land
    registration software (VBDLIS JSON) and the notifications' SMS gateway."""
    import signal
    import threading

    from rich.table import Table

    from hub.devtools import simulators

    ports = {kind: port + port_offset for kind, port in simulators.DEFAULT_PORTS.items()}
    portal: dict[str, str] = {"variant": portal_variant}
    if portal_dstcode is not None:
        portal["dstcode"] = portal_dstcode
    stop = threading.Event()  # handlers first: a SIGTERM as soon as a simulator answers still stops them cleanly
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        started = simulators.start_all(ports, trust=trust, options={"national_portal": portal})
    except ValueError as exc:  # an unknown portal variant
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot start the simulators: {exc}") from None
    except KeyMaterialError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="Lienthong partner simulators", title_justify="left")
    for column in ("partner", "URL (the connector's endpoint)", "inspect (GET) / control (POST)"):
        table.add_column(column, no_wrap=True)
    for kind, sim in started.items():
        table.add_row(kind, sim.url, f"{sim.base_url}/_received · /_control")
    out.print(table)
    out.print("Simulators running; Ctrl-C or SIGTERM stops them.", markup=False)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulators.stop_all(started)
    out.print("simulators stopped", markup=False)


@app.command()
def demo(
    once: Annotated[bool, typer.Option("--once", help="Run the flows, print the results, exit (0 = all ok)")] = False,
    port: Annotated[int, typer.Option(help="Port of the API on 127.0.0.1")] = 8000,
    simulator_port_offset: Annotated[
        int, typer.Option(help="Added to every simulator's default port 9001–9008 and 9025 (as `hub simulate` does)")
    ] = 0,
    data_dir: Annotated[Path, typer.Option(help="Fresh data folder (keys, SQLite store, queue, log)")] = Path(
        "var/demo"
    ),
) -> None:
    """Run the hub with its partners on loopback (embedded default) through flows F1–F7 and show what each
    partner received; then keep the API up on http://127.0.0.1:PORT until Ctrl-C (--once: exit instead; the last
    line is one JSON object {"flows": {...}, "lost": N}). A port in use: one error naming it, exit 2."""
    import json
    import signal
    import threading
    import time

    from rich.table import Table

    from hub.devtools import demo as demos
    from hub.devtools.simulators import DEFAULT_PORTS as DEFAULT_SIMULATOR_PORTS

    started = time.monotonic()
    sim_ports = {kind: p + simulator_port_offset for kind, p in DEFAULT_SIMULATOR_PORTS.items()}
    if not all(0 < p < 65536 for p in (port, *sim_ports.values())):
        raise _fail(f"ports must lie in 1–65535: --port {port}, simulators {min(sim_ports.values())}–"
                    f"{max(sim_ports.values())} (--simulator-port-offset {simulator_port_offset})")  # fmt: skip
    clash = [kind for kind, p in sim_ports.items() if p == port]
    if clash:
        raise _fail(f"--port {port} is also the {clash[0]} simulator's port: choose another --port or "
                    "--simulator-port-offset")  # fmt: skip
    hub = demos.DemoHub(demos.DemoOptions(data_dir=data_dir, port=port, simulator_ports=sim_ports))
    out.rule("Lienthong demo: the hub and its partners on 127.0.0.1 (embedded broker, SQLite)")
    results: list = []
    lost = 0
    failed_setup = None

    def step(text: str) -> None:
        out.print(f"  [green]✓[/] {text}", highlight=False)

    def flow_done(result) -> None:
        mark = "[bold green]ok[/]" if result.ok else f"[bold red]FAILED[/]: {result.detail}"
        out.print(f"[bold]{result.name}[/] {result.title}: {mark} ({result.seconds:.1f}s)", highlight=False)

    try:
        try:
            hub.start(step)
        except demos.PortsInUseError as exc:  # a usage error: say which port and the option that moves it
            raise _fail(_ports_in_use_hint(exc.busy, port, simulator_port_offset)) from None
        except Exception as exc:  # a simulator that cannot bind after all, a key that cannot be written…
            failed_setup = f"{type(exc).__name__}: {exc}"
            err.print(f"error: the demo could not start: {failed_setup}", markup=False)
        if failed_setup is None:
            with out.status("running the flows…"):
                results = demos.run_flows(hub, step=step, on_result=flow_done)
            hub.wait_idle()
            lost = hub.lost()
            table = Table(title="What each partner received", title_justify="left")
            for column in ("partner", "dossier", "received"):
                table.add_column(column, no_wrap=column != "received")
            for row in demos.partner_rows(hub):
                table.add_row(*row)
            out.print(table)
            flows = Table(title="Flows", title_justify="left")
            for column in ("flow", "result", "seconds", "what happened"):
                flows.add_column(column, no_wrap=column != "what happened")
            for r in results:
                flows.add_row(r.name, "[green]ok[/]" if r.ok else "[red]failed[/]", f"{r.seconds:.1f}", r.detail)
            out.print(flows)
            out.print(f"lost messages: {lost}; total {time.monotonic() - started:.1f}s", markup=False)
            if not once:
                waiting = demos.leave_dead_letter_for_the_operator(hub)
                out.print(
                    f"\nOperator page: {hub.base_url}/ (sign in as {hub.settings.operator_name}, password: the "
                    f"operator key below); dead letter #{waiting} (a portal refusal) waits there to be replayed.",
                    markup=False,
                )
                out.print(
                    f"\nThe hub is up on {hub.base_url} (OpenAPI {hub.base_url}/docs, operator page {hub.base_url}/)\n"
                    f"  admin key:    {hub.admin_key}\n  operator key: {hub.operator_key}\n"
                    f"  F6's dead letter #{hub.dead_letter_id} and F7's held result "
                    f"{', '.join(f'#{i}' for i in hub.held_result_ids) or '-'} (replayed): curl -H 'X-Api-Key: "
                    f"{hub.operator_key}' '{hub.base_url}/api/v1/dead-letters?include_replayed=true'\n"
                    f"  overdue intake: curl -H 'X-Api-Key: {hub.operator_key}' {hub.base_url}/api/v1/deadlines\n"
                    f"  CLI: LIENTHONG_DATABASE_URL={hub.settings.database_url} LIENTHONG_DATA_DIR={data_dir} "
                    ".venv/bin/hub queues\nCtrl-C stops the demo.",
                    markup=False,
                )
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                try:
                    while not stop.wait(0.5):
                        pass
                except KeyboardInterrupt:
                    pass
    finally:
        hub.close()
    if failed_setup is not None:
        results_json = json.dumps({"flows": {f.name: f"failed: {failed_setup}" for f in demos.FLOWS}, "lost": 0})
        sys.stdout.write(results_json + "\n")
        raise typer.Exit(EXIT_REJECTED)
    if once:
        sys.stdout.write(demos.summary_json(results, lost) + "\n")
        sys.stdout.flush()
    if lost or not all(r.ok for r in results):
        raise typer.Exit(EXIT_REJECTED)


def _ports_in_use_hint(busy: dict[str, int], port: int, offset: int) -> str:
    """What ``hub demo`` says when its ports are taken: each busy port, and the option that moves it."""
    lines = ["the demo cannot start: " + ", ".join(
        f"port {p} ({'the API' if name == 'api' else f'the {name} simulator'})" for name, p in busy.items()
    ) + " already in use (another `hub demo` or `hub simulate` still running?)"]  # fmt: skip
    if "api" in busy:
        lines.append(f"  move the API with --port (e.g. hub demo --port {port + 80})")
    if set(busy) - {"api"}:
        lines.append(f"  move the simulators with --simulator-port-offset (added to their ports 9001–9008, 9025; "
                     f"e.g. hub demo --simulator-port-offset {offset + 100})")  # fmt: skip
    return "\n".join(lines)


@app.command("postal-poll")
def postal_poll(
    every: Annotated[
        float | None, typer.Option(help="Poll again every N seconds until Ctrl-C/SIGTERM (default: once)")
    ] = None,
) -> None:
    """Read each postal connector's tracking feed and send one signed postal.status per new event (F4)."""
    import signal
    import threading

    from hub.flows.postal_tracking import tracker_for

    runtime = _runtime()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        tracker = tracker_for(runtime)
        if not tracker.adapters:
            raise _fail("no postal connector with an endpoint is registered")
        while True:
            for result in tracker.poll_all():
                out.print(
                    f"{result.connector}: {result.seen} events read, {len(result.emitted)} postal.status sent, "
                    f"{result.skipped} already sent"
                    + (f", {len(result.returned)} results delivered (status 10)" if result.returned else "")
                    + (f", {len(result.errors)} errors" if result.errors else ""),
                    markup=False,
                )
            if every is None or stop.wait(every):
                break
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()


@app.command("postal-cancel")
def postal_cancel(
    connector: Annotated[str, typer.Argument(help="The postal connector's code")],
    dossier: Annotated[str, typer.Argument(help="The dossier code (VNPost's OrderNumber)")],
    direction: Annotated[
        str | None, typer.Option(help="pickup or delivery, when the dossier has both orders standing")
    ] = None,
) -> None:
    """Cancel a dossier's VNPost order (GET ?CustomerCode=&OrderNumber=); its ItemCode is not used again."""
    from adapters.base import DeliveryError
    from hub.flows.postal_orders import PostalOrderError, cancel

    if direction not in (None, "pickup", "delivery"):
        raise _fail(f"--direction {direction!r}: pickup or delivery")
    runtime = _runtime()
    try:
        done = cancel(runtime, connector, dossier, direction)
    except (PostalOrderError, DeliveryError) as exc:
        raise _fail(str(exc), EXIT_REJECTED) from None
    finally:
        runtime.close()
    out.print(f"{dossier}: order {done.item_code or '-'} cancelled (Status {done.status} {done.message})", markup=False)


@app.command("postal-quote")
def postal_quote(
    connector: Annotated[str, typer.Argument(help="The postal connector's code")],
    order: Annotated[Path, typer.Argument(help="A postal.order packet (XML), - for stdin")],
    weight: Annotated[int, typer.Option(help="Weight in grams", min=0)] = 0,
) -> None:
    """Ask VNPost the price of an order (UNSOURCED call: the connector's price_path must be set)."""
    from adapters.base import DeliveryError
    from hub import packets
    from hub.flows.postal_orders import PostalOrderError, quote
    from hub.packets.postal import PostalOrder

    try:
        model = packets.from_xml("postal.order", _read_input(order))
    except RejectedError as exc:
        raise _fail(f"{order}: {exc}") from None
    assert isinstance(model, PostalOrder)
    runtime = _runtime()
    try:
        fee = quote(runtime, connector, model, weight)
    except (PostalOrderError, DeliveryError) as exc:
        raise _fail(str(exc), EXIT_REJECTED) from None
    finally:
        runtime.close()
    out.print(f"{model.dossier_code}: {fee} VND", markup=False)


payments_app = typer.Typer(help="Payments at the payment platform (F3): reconciliation of lost CONFIRMs.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(payments_app, name="payments")


@payments_app.command("reconcile")
def payments_reconcile(
    after: Annotated[
        float | None,
        typer.Option(help="Query payments initiated at least MINUTES ago [default: "
                     "LIENTHONG_PAYMENT_RECONCILE_AFTER_MINUTES, 15]", metavar="MINUTES", min=0,
                     show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """QUERY every payment still unsettled after the configured delay (its CONFIRM lost?): a paid one is settled
    as the CONFIRM would have (receipt to the province, status 6 → 4 to the portal, once), a pending one asked
    again later, a failed one recorded. Exit 0; 1 when a payment could not be queried or was refused."""
    from hub.cliformat import print_json
    from hub.config import get_settings
    from hub.flows.reconcile import reconcile

    minutes = after if after is not None else get_settings().payment_reconcile_after_minutes
    runtime = _runtime()
    try:
        runtime.refresh()
        results = reconcile(runtime, after_s=minutes * 60.0)
    finally:
        runtime.close()
    if as_json:
        print_json({"after_minutes": minutes, "payments": [r.as_dict() for r in results]})
    elif not results:
        out.print(f"no payment unsettled for {minutes:g} minutes or more", markup=False)
    else:
        for r in results:
            state = f" (TrangThaiGD {r.trang_thai})" if r.trang_thai else ""
            detail = f": {r.detail}" if r.detail else ""
            out.print(f"{r.reference} {r.connector} {r.dossier_code} {r.outcome}{state}{detail}", markup=False)
    if any(r.outcome in ("error", "refused") for r in results):
        raise typer.Exit(1)


catalogue_app = typer.Typer(help="The national portal's procedure catalogue (LayDanhSachTTHC, LayThuTuc, …).",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(catalogue_app, name="catalogue")


def _progress_printer() -> Any:
    """Progress of a sync on stderr: ``LayThuTuc N of M procedures`` about every 5% (every one on a terminal)."""
    tty = sys.stderr.isatty()

    def progress(done: int, total: int, code: str) -> None:
        if tty or done in (1, total) or done % max(total // 20, 1) == 0:
            err.print(f"LayThuTuc {done} of {total} procedures ({code})", markup=False)

    return progress


@catalogue_app.command("sync")
def catalogue_sync(
    connector: Annotated[
        str | None, typer.Option(help="The national portal connector to read it from (default: the only one)")
    ] = None,
    allow_shrink: Annotated[
        bool,
        typer.Option(
            "--allow-shrink",
            help="Replace the catalogue even when the portal lists no procedure, or fewer than half of those kept "
            "(refused otherwise: a glitch must not wipe it)",
        ),
    ] = False,
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
    actor: ActorOpt = None,
) -> None:
    """Read the national portal's procedure catalogue into the store (procedures with LayThuTuc, units, fields),
    replacing the one kept. Progress on stderr. Exit 1 if the portal refused or failed, or listed no procedure or
    fewer than half of those kept without --allow-shrink (recorded; the catalogue kept is unchanged), or another
    sync is running; 2 if no connector can serve the catalogue."""
    import time

    from adapters.base import DeliveryError
    from hub.cliformat import jsonable, print_json
    from hub.errors import CatalogueError, CatalogueUnavailableError
    from hub.flows.catalogue import sync_catalogue

    runtime = _runtime()
    started = time.monotonic()
    try:
        sync = sync_catalogue(runtime.store, runtime.routing.destinations, connector=connector,
                              actor=_cli_actor(actor).name, progress=_progress_printer(),
                              allow_shrink=allow_shrink)  # fmt: skip
    except CatalogueUnavailableError as exc:
        raise _fail(str(exc)) from None
    except (CatalogueError, DeliveryError) as exc:
        message = f"catalogue sync failed (recorded; the catalogue kept is unchanged): {exc}"
        raise _fail(message, EXIT_REJECTED) from None
    finally:
        runtime.close()
    if as_json:
        print_json(jsonable(sync, _clock(utc)))
        return
    details = f" ({sync.details_failed} without LayThuTuc details)" if sync.details_failed else ""
    out.print(f"catalogue synced from {sync.connector}: {sync.procedures} procedures{details}, {sync.units} units, "
              f"{sync.fields} fields in {time.monotonic() - started:.1f} s", markup=False)  # fmt: skip


@catalogue_app.command("show")
def catalogue_show(as_json: JsonOpt = False, utc: UtcOpt = False) -> None:
    """What the procedure catalogue holds, when it was last synced (and how long ago), and the last error."""
    from hub.cliformat import jsonable, print_json
    from hub.config import get_settings

    clock = _clock(utc)
    runtime = _runtime()
    try:
        status = runtime.store.catalogue_status()
    finally:
        runtime.close()
    age = status.age_s()
    max_age_s = get_settings().catalogue_max_age_days * 86400
    if as_json:
        print_json({
            "procedures": status.procedures, "units": status.units, "fields": status.fields,
            "synced_at": jsonable(status.synced_at, clock), "age_s": age,
            "stale": age is None or age > max_age_s, "running": status.running, "last_error": status.last_error,
            "last_success": jsonable(status.last_success, clock), "latest": jsonable(status.latest, clock),
        })  # fmt: skip
        return
    out.print(f"{status.procedures} procedures, {status.units} units, {status.fields} fields", markup=False)
    if status.last_success is None:
        out.print("never synced (`hub catalogue sync`); intake does not warn about procedures until it is",
                  markup=False)  # fmt: skip
    else:
        stale = " - older than LIENTHONG_CATALOGUE_MAX_AGE_DAYS" if age is not None and age > max_age_s else ""
        out.print(f"last synced {clock.full(status.synced_at)} ({_age(age)} ago) from "
                  f"{status.last_success.connector} by {status.last_success.actor}{stale}", markup=False)  # fmt: skip
    if status.running and status.latest is not None:
        out.print(f"a sync is running since {clock.full(status.latest.started_at)} ({status.latest.actor})",
                  markup=False)  # fmt: skip
    if status.last_error:
        out.print(f"last sync failed: {status.last_error}", markup=False)


operator_app = typer.Typer(help="Operator page accounts.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")


@operator_app.command("hash-password")
def operator_hash_password(
    name: Annotated[str, typer.Argument(help="The operator's sign-in name")],
    password_stdin: Annotated[bool, typer.Option("--stdin", help="Read the password from standard input")] = False,
) -> None:
    """Print `NAME:$argon2id$…` for LIENTHONG_OPERATORS (comma-separated); the password itself is never stored.

    Accounts are usually kept in the store instead (`hub operator add`), where they can be disabled and audited.
    (Entries printed by older versions, `NAME:scrypt$…`, are still accepted.)
    """
    from hub.console.auth import hash_password

    if ":" in name or "," in name or not name.strip():
        raise _fail("the name may not be empty nor contain ':' or ','")
    if password_stdin:
        import sys

        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise _fail("use a password of at least 8 characters")
    out.print(f"{name.strip()}:{hash_password(password)}", markup=False, soft_wrap=True)


@contextlib.contextmanager
def _store():
    """The configured store, migrated (the broker is not needed, so it is not opened)."""
    from hub.config import get_settings
    from hub.runtime import open_store

    try:
        store = open_store(get_settings())
    except LienthongError as exc:
        raise _fail(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def _account_change(name: str) -> Iterator[None]:
    """An account change the store refuses: its reason and exit 1."""
    from hub.errors import AccountRefusedError

    try:
        yield
    except AccountRefusedError as exc:
        err.print(f"error: {exc.detail} [{exc.rule}]", markup=False)
        raise typer.Exit(EXIT_REJECTED) from None


def _new_password(password_stdin: bool) -> str:
    """A new password from standard input (one line) or a hidden prompt asked twice; never from the command line,
    where it would land in the shell history and in every process listing."""
    from hub.console.auth import MIN_PASSWORD

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise _fail(f"use a password of at least {MIN_PASSWORD} characters")
    return password


AccountArg = Annotated[str, typer.Argument(metavar="NAME", help="The account's sign-in name")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input (one line), not a prompt")
]


def _who(actor: str | None):
    from hub.store.accounts import Who

    return Who(_actor(actor))


@operator_app.command("add")
def operator_add(
    name: AccountArg,
    role: Annotated[str, typer.Option(help="viewer (reads), operator (also acts) or admin (also accounts, audit)")],
    password_stdin: PasswordStdinOpt = False,
    actor: ActorOpt = None,
) -> None:
    """Add an operator page account kept in the store (audited as account.add)."""
    from hub.console.auth import new_password_hash
    from hub.store import accounts

    with _account_change(name):
        name, role = accounts.check_name(name), accounts.check_role(role)
        hashed = new_password_hash(_new_password(password_stdin))
        with _store() as store:
            accounts.add(store.engine, name, role, hashed, by=_who(actor))
    out.print(f"added account {name} ({role})", markup=False)


@operator_app.command("disable")
def operator_disable(name: AccountArg, actor: ActorOpt = None) -> None:
    """Disable an account kept in the store: it no longer signs in, and its sessions end now."""
    from hub.store import accounts

    with _account_change(name), _store() as store:
        ended = accounts.disable(store.engine, name, by=_who(actor))
    out.print(f"disabled account {name.strip()} ({ended} session(s) ended)", markup=False)


@operator_app.command("enable")
def operator_enable(name: AccountArg, actor: ActorOpt = None) -> None:
    """Let a disabled account sign in again, with its password as it was."""
    from hub.store import accounts

    with _account_change(name), _store() as store:
        accounts.enable(store.engine, name, by=_who(actor))
    out.print(f"enabled account {name.strip()}", markup=False)


@operator_app.command("reset-password")
def operator_reset_password(name: AccountArg, password_stdin: PasswordStdinOpt = False, actor: ActorOpt = None) -> None:
    """Give an account kept in the store a new password; its sessions end now."""
    from hub.console.auth import new_password_hash
    from hub.store import accounts

    with _account_change(name), _store() as store:
        if accounts.get(store.engine, name) is None:  # before asking for a password it could not use
            raise _fail(f"no account {name.strip()!r} is kept in the store (see `hub operator list`)", EXIT_REJECTED)
        hashed = new_password_hash(_new_password(password_stdin))
        ended = accounts.reset_password(store.engine, name, hashed, by=_who(actor))
    out.print(f"new password set for {name.strip()} ({ended} session(s) ended)", markup=False)


@operator_app.command("list")
def operator_list(as_json: JsonOpt = False, utc: UtcOpt = False) -> None:
    """Every account that may sign in: the store's, then the configured ones (LIENTHONG_OPERATORS, API keys) that
    no store account of the same name replaces."""
    from rich.table import Table

    from hub.cliformat import console, jsonable, print_json
    from hub.config import get_settings
    from hub.console.auth import configured
    from hub.store import accounts

    clock = _clock(utc)
    with _store() as store:
        kept = accounts.list_accounts(store.engine)
    names = {a.name for a in kept}
    rows: list[dict[str, Any]] = [{"name": a.name, "role": a.role, "source": "store", "disabled_at": a.disabled_at,
             "created_at": a.created_at, "created_by": a.created_by, "password_changed_at": a.password_changed_at}
            for a in kept]  # fmt: skip
    rows += [{"name": a.name, "role": a.role, "source": "api-key" if a.api_key else "LIENTHONG_OPERATORS",
              "disabled_at": None, "created_at": None, "created_by": None, "password_changed_at": None}
             for name, a in sorted(configured(get_settings()).items()) if name not in names]  # fmt: skip
    if as_json:
        print_json(jsonable(rows, clock))
        return
    screen = console()
    if not rows:
        screen.print("no accounts (add one with `hub operator add NAME --role admin`)")
        return
    table = Table(title=f"{len(rows)} account(s), times {clock.label}")
    for column in ("name", "role", "source", "state", "password changed"):
        table.add_column(column, overflow="fold", no_wrap=column == "role")
    for r in rows:
        state = "active" if r["disabled_at"] is None else f"disabled {clock.short(r['disabled_at'])}"
        table.add_row(esc(r["name"]), r["role"], r["source"], state, clock.short(r["password_changed_at"]))
    screen.print(table)


audit_app = typer.Typer(help="Read the audit log: sign-ins, registry changes, replays, account changes…",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(audit_app, name="audit")


@audit_app.command("list")
def audit_list(
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601; no offset: the shown zone)")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601; no offset: the shown zone)")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor")] = None,
    group: Annotated[
        str | None, typer.Option(help="signin, registry, dead_letter, delivery, destination, payload, account, dossier")
    ] = None,
    outcome: Annotated[str | None, typer.Option(help="ok or refused")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Entries per page")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next_cursor a previous page printed")] = None,
    as_json: JsonOpt = False,
    utc: UtcOpt = False,
) -> None:
    """Audit log entries, newest first, one page at a time (the total and the next page's cursor are printed)."""
    from rich.table import Table

    from hub.cliformat import NARROW, console, jsonable, print_json
    from hub.errors import InvalidCursorError
    from hub.store.audit import GROUPS, OUTCOMES, AuditFilter

    clock = _clock(utc)
    if group is not None and group not in GROUPS:
        raise _fail(f"--group: one of {', '.join(GROUPS)}")
    if outcome is not None and outcome not in OUTCOMES:
        raise _fail(f"--outcome: one of {', '.join(OUTCOMES)}")
    flt = AuditFilter(since=_cli_time(since, "--since", clock), until=_cli_time(until, "--until", clock), actor=actor,
                      action=GROUPS[group] if group else None, outcome=outcome)  # fmt: skip
    with _store() as store:
        try:
            page = store.audit_entries(flt, cursor=cursor, limit=limit)
        except InvalidCursorError as exc:
            raise _fail(exc.detail) from None
    if as_json:
        print_json(jsonable({"items": list(page.items), "total": page.total, "next_cursor": page.next_cursor}, clock))
        return
    screen = console()
    if not page.items:
        screen.print(f"no audit entries match ({page.total} in all)")
        return
    narrow = screen.width < NARROW
    table = Table(title=f"{len(page.items)} of {page.total} audit entries, times {clock.label}")
    columns = ("time", "actor", "action", "subject", "outcome") + (() if narrow else ("client", "detail"))
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("time",))
    for e in page.items:
        detail = ", ".join(f"{k}={v}" for k, v in (e.detail or {}).items())
        outcome = e.outcome if e.outcome == "ok" else f"[bold red]{esc(e.outcome)}[/]"
        cells = {"time": clock.short(e.at), "actor": esc(e.actor), "action": esc(e.action),
                 "subject": esc(e.subject or "-"), "outcome": outcome,
                 "client": esc(e.client or "-"), "detail": esc(detail or "-")}  # fmt: skip
        table.add_row(*(cells[c] for c in columns))
    screen.print(table)
    if page.next_cursor:
        screen.print(f"next page: --cursor {page.next_cursor}", markup=False)


def main() -> None:
    """Console-script entry point."""
    app()
