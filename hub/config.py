"""Hub configuration, read from ``LIENTHONG_*`` environment variables (and an optional ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. Each field is read from ``LIENTHONG_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", env_file=".env", extra="ignore")

    broker_url: str = Field(
        "embedded",
        description="`embedded` (durable queue in the data folder; options as a query, e.g. "
        "`embedded?visibility_timeout_s=30`) or an `amqp://user:pass@host:port/vhost` URL; for a RabbitMQ cluster, "
        "the nodes' URLs comma-separated (the hub connects to the first reachable and fails over to the next)",
    )
    database_url: str = Field(
        "sqlite:///var/lienthong.db",
        description="SQLAlchemy URL of the store: a SQLite file (default) or `postgresql://…`. For a PostgreSQL "
        "primary/standby pair list both hosts and ask for the writable one: `postgresql://user:pass@/lienthong?"
        "host=pg1:5432&host=pg2:5432&target_session_attrs=read-write` (hosts are tried in order; after a failover "
        "the pool reconnects to the new primary without a restart)",
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        "full",
        description="How a SQLite store commits (WAL mode): `full` (default) syncs every commit to disk, so an "
        "answered 202 survives a power cut; `normal` is faster but a power cut may lose the last commits (a process "
        "crash loses nothing either way). Not used with PostgreSQL",
    )
    hub_code: str = Field("000.00.00.H00", description="The hub's own agency code, used as envelope sender")
    key_file: Path | None = Field(None, description="PEM private key the hub signs with")
    cert_file: Path | None = Field(None, description="PEM certificate matching `key_file`")
    trust_dir: Path | None = Field(None, description="Folder of trusted CA certificates (*.pem)")
    routes_file: Path | None = Field(None, description="YAML routing table: destinations and routes")
    data_dir: Path = Field(Path("var"), description="Folder for the embedded queue and generated demo keys")
    api_host: str = Field("127.0.0.1", description="Address `hub serve` listens on")
    api_port: int = Field(8000, description="Port `hub serve` listens on")
    public_url: str | None = Field(
        None,
        description="Base URL partners reach the hub at (e.g. `https://lienthong.example.gov.vn`), used as the "
        "WSDL's `soap:address`; unset = `http://api_host:api_port`. Never taken from a request's Host header",
    )
    metrics_api_key: SecretStr | None = Field(
        None,
        description="API key Prometheus scrapes `/metrics` with (`Authorization: Bearer` or `X-Api-Key`); the "
        "admin and operator keys work too",
    )
    metrics_public: bool = Field(
        False,
        description="Serve `/metrics` without a key: only for a hub whose `api_host` is an internal address "
        "Prometheus alone reaches",
    )
    max_message_bytes: int = Field(2 * 1024 * 1024, description="Largest packet accepted, in bytes")
    max_xml_depth: int = Field(64, description="Deepest element nesting accepted")
    max_callback_bytes: int = Field(
        256 * 1024, gt=0, description="Largest partner callback body accepted (payment CONFIRM with its receipt)"
    )
    max_connector_spec_bytes: int = Field(256 * 1024, gt=0, description="Largest connector spec accepted by the API")
    max_form_bytes: int = Field(
        64 * 1024, gt=0, description="Largest body of any other request (operator page forms, sign-in, sign-out)"
    )
    body_timeout_s: float = Field(
        60.0, gt=0, description="A request's whole body must arrive within this many seconds of its headers (408)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="`hub serve` closes a connection whose request headers take longer than this"
    )
    keep_alive_s: int = Field(5, gt=0, description="`hub serve` closes an idle keep-alive connection after this")
    loop_check_max_bytes: int = Field(
        64 * 1024,
        ge=0,
        description="Envelopes larger than this are checked and committed by a thread, not on the API's event loop, "
        "so that large bodies do not hold up other requests (smaller ones keep the loop's group commit)",
    )
    loop_check_budget_s: float = Field(
        0.02,
        gt=0,
        description="CPU time one turn of the API's event loop may spend checking envelopes before it hands "
        "them to be committed and answers other requests",
    )
    admin_api_key: SecretStr | None = Field(
        None, description="API key of the hub administrator (connectors, dead letters, every trace); unset = none"
    )
    admin_name: str = Field("admin", description="Name recorded as the actor of actions taken with the admin key")
    operator_api_key: SecretStr | None = Field(
        None, description="API key of operators (queues, dead letters and their replay, traces); unset = none"
    )
    operator_name: str = Field("operator", description="Name recorded as the actor of actions taken with it")
    relay_interval_s: float = Field(5.0, gt=0, description="How often `hub serve` republishes unconfirmed deliveries")
    status_time_ahead_s: float = Field(
        300.0, ge=0, le=86400,
        description="How far ahead of the hub's clock a dossier status time may be (clock skew); a later one is "
        "refused at intake as `status-time-future`, since applied it would make every later update stale",
    )
    registry_refresh_s: float = Field(
        10.0, gt=0, description="How often each `hub serve` process reloads routes and certificates from the registry"
    )
    lookup_timeout_s: float = Field(
        10.0, gt=0, le=120, description="How long `POST /api/v1/lookups` waits for the population DB before a 504"
    )
    result_max_bytes: int = Field(
        20 * 1024 * 1024, gt=0,
        description="Largest result document a worker fetches to check its signature (a finished dossier update "
        "from a connector with `result_signers`); a larger one is held as `result-too-large`",
    )
    result_fetch_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="How long a worker waits for a result document in all; a slower host is retried later",
    )
    operators: str = Field(
        "",
        description="Operator page accounts from configuration (role operator): `name:$argon2id$…` pairs separated "
        "by commas (make a hash with `hub operator hash-password`; older `name:scrypt$…` entries still work). The "
        "usual place for accounts is the store (`hub operator add`, the accounts page), whose account wins over one "
        "named here. The admin and operator API keys sign in as `admin_name` / `operator_name` unless named here",
    )
    session_secret: SecretStr | None = Field(
        None, description="Key signing the operator page's session cookies; unset = a random one kept in data_dir"
    )
    session_https_only: bool = Field(
        False,
        description="Mark the operator page's cookies `Secure` on every request; unset, they are `Secure` unless "
        "the page is served over plain HTTP on a loopback address (http://127.0.0.1, http://localhost)",
    )
    session_max_age_s: int = Field(8 * 3600, gt=0, description="An operator page session lasts this long")
    signin_free_failures: int = Field(
        5, ge=1, description="Wrong sign-ins allowed per account and per client address before the backoff starts"
    )
    signin_backoff_base_s: float = Field(
        1.0, gt=0, description="First wait after `signin_free_failures` failures; each further failure doubles it"
    )
    signin_backoff_max_s: float = Field(900.0, gt=0, description="Longest wait the sign-in backoff imposes")
    signin_failure_window_s: float = Field(
        3600.0, gt=0, description="Failed sign-ins are forgotten this long after the last one"
    )
    console_refresh_s: float = Field(5.0, gt=0, description="How often the operator page refreshes its panels")
    partner_window_s: float = Field(
        900.0, gt=0, description="Window (s) of recent attempts a partner's state and error rate are derived from"
    )
    queue_age_warn_s: float = Field(
        900.0, gt=0, description="A destination whose oldest pending message is older than this stands out"
    )
    working_days: str = Field(
        "Mon-Fri", description="Working days of the intake calendar: `Mon-Fri`, or a list such as `Mon,Tue,Sat`"
    )
    working_hours: str = Field(
        "07:30-11:30,13:30-17:00", description="Working hours of each working day (local time), comma-separated"
    )
    holidays_country: str = Field(
        "VN",
        description="Country whose public holidays (the `holidays` package: Tết, 30 April, 1 May, 2 September and "
        "the substitute days it knows) are off the working calendar; empty for none",
    )
    holidays: str = Field(
        "",
        description="Extra days off besides the country's public holidays (the compensatory days the government "
        "decrees each year): ISO dates, comma-separated",
    )
    extra_working_days: str = Field(
        "",
        description="Days worked although a weekend or holiday (the Saturdays the government moves working days "
        "to): ISO dates, comma-separated; a date may not also be a day off",
    )
    calendar_file: Path | None = Field(
        None,
        description="YAML file of labelled days moved by decree, read with the two settings above: `days_off:` and "
        "`working_days:`, each a map of ISO date to label (`hub calendar show YEAR` prints the result)",
    )
    calendar_timezone: str = Field("Asia/Ho_Chi_Minh", description="Time zone of the working calendar")
    intake_deadline_hours: float = Field(
        8.0, gt=0, description="Working hours within which an online dossier must be answered at intake (status 1)"
    )
    intake_alert_channels: str = Field(
        "2",
        description="Submission channels the intake alert counts (1 in person, 2 online, 3 postal), comma-separated: "
        "the 8-working-hour rule is about online submissions",
    )
    overdue_excluded_statuses: str = Field(
        "3,5,6,7,8,9,10",
        description="Statuses of a dossier past its due date that the overdue-processing alert leaves out: done or "
        "returned (9, 10), ended otherwise (3, 7, 8) and waiting on the applicant (5, 6: the supplement brings a new "
        "due date)",
    )
    catalogue_every_hours: float | None = Field(
        None,
        gt=0,
        description="`hub worker` syncs the national portal's procedure catalogue this often (hours; one worker at a "
        "time, under a lease in the store); unset: only `hub catalogue sync` does. `--catalogue-every` wins",
    )
    payment_reconcile_after_minutes: float = Field(
        15.0,
        ge=0,
        description="A payment whose CONFIRM has not come this long after its INIT is asked about with QUERY "
        "(`hub payments reconcile`, and the workers' schedule)",
    )
    payment_reconcile_every_minutes: float = Field(
        5.0,
        ge=0,
        description="`hub worker` reconciles unsettled payments this often (minutes; the workers share the work "
        "through claims in the store); 0: only `hub payments reconcile` does. `--reconcile-every` wins",
    )
    catalogue_max_age_days: float = Field(
        7.0, gt=0, description="The operator page warns when the procedure catalogue's last sync is older than this"
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field("json", description="`json` (one object per line) or `console`")

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _synchronous_mode(cls, value: object) -> object:
        """Case-insensitive, and a wrong value names the variable and its two choices."""
        mode = value.strip().lower() if isinstance(value, str) else value
        if mode not in ("full", "normal"):
            raise ValueError(
                f"LIENTHONG_SQLITE_SYNCHRONOUS must be `full` (durable across a power cut, the default) or `normal` "
                f"(faster; a power cut may lose the last commits), not {value!r}"
            )
        return mode


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


def env_var_names() -> set[str]:
    """The names of every environment variable the hub reads."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}
