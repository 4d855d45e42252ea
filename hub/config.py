"""Hub configuration, read from ``LIENTHONG_*`` environment variables (and an optional ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. Each field is read from ``LIENTHONG_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", env_file=".env", extra="ignore")

    broker_url: str = Field(
        "embedded",
        description="`embedded` (durable queue in the data folder; options as a query, e.g. "
        "`embedded?visibility_timeout_s=30`) or an `amqp://user:pass@host:port/vhost` URL",
    )
    database_url: str = Field(
        "sqlite:///var/lienthong.db",
        description="SQLAlchemy URL of the store: a SQLite file (default) or `postgresql://…`",
    )
    hub_code: str = Field("000.00.00.H00", description="The hub's own agency code, used as envelope sender")
    key_file: Path | None = Field(None, description="PEM private key the hub signs with")
    cert_file: Path | None = Field(None, description="PEM certificate matching `key_file`")
    trust_dir: Path | None = Field(None, description="Folder of trusted CA certificates (*.pem)")
    routes_file: Path | None = Field(None, description="YAML routing table: destinations and routes")
    data_dir: Path = Field(Path("var"), description="Folder for the embedded queue and generated demo keys")
    api_host: str = Field("127.0.0.1", description="Address `hub serve` listens on")
    api_port: int = Field(8000, description="Port `hub serve` listens on")
    max_message_bytes: int = Field(2 * 1024 * 1024, description="Largest packet accepted, in bytes")
    max_xml_depth: int = Field(64, description="Deepest element nesting accepted")
    admin_api_key: SecretStr | None = Field(
        None, description="API key of the hub administrator (connectors, dead letters, every trace); unset = none"
    )
    admin_name: str = Field("admin", description="Name recorded as the actor of actions taken with the admin key")
    operator_api_key: SecretStr | None = Field(
        None, description="API key of operators (queues, dead letters and their replay, traces); unset = none"
    )
    operator_name: str = Field("operator", description="Name recorded as the actor of actions taken with it")
    relay_interval_s: float = Field(5.0, gt=0, description="How often `hub serve` republishes unconfirmed deliveries")
    registry_refresh_s: float = Field(
        10.0, gt=0, description="How often each `hub serve` process reloads routes and certificates from the registry"
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field("json", description="`json` (one object per line) or `console`")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


def env_var_names() -> set[str]:
    """The names of every environment variable the hub reads."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}
