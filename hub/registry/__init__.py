"""The connector registry: connectors declared in YAML, stored in the hub's database, and what the hub derives
from them — routing, pinned certificates, API-key authentication and deny-by-default authorization.

``load_spec(path)`` validates a connector file (every problem at once); ``Registry(store)`` keeps connectors;
``run_check(registry, code)`` is the onboarding check behind ``hub connector check``.
"""

from hub.registry.check import CheckItem, CheckReport, run_check
from hub.registry.core import (
    API_KEY_PREFIX,
    AuditEntry,
    CertificateInfo,
    Connector,
    Registry,
    api_key_matches,
    api_key_prefix,
    hash_api_key,
    new_api_key,
)
from hub.registry.spec import (
    CONNECTOR_KINDS,
    DEFAULT_PROFILE,
    KNOWN_PROFILES,
    CircuitSpec,
    ConnectorSpec,
    Endpoint,
    RetrySpec,
    load_spec,
    loads_spec,
    parse_spec,
)

__all__ = [
    "API_KEY_PREFIX",
    "CONNECTOR_KINDS",
    "DEFAULT_PROFILE",
    "KNOWN_PROFILES",
    "AuditEntry",
    "CertificateInfo",
    "CheckItem",
    "CheckReport",
    "CircuitSpec",
    "Connector",
    "ConnectorSpec",
    "Endpoint",
    "Registry",
    "RetrySpec",
    "api_key_matches",
    "api_key_prefix",
    "hash_api_key",
    "load_spec",
    "loads_spec",
    "new_api_key",
    "parse_spec",
    "run_check",
]
