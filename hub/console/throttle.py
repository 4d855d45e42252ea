"""Sign-in throttling policy: what a failed sign-in is counted against, and how long a count makes one wait.

Failures count against the name tried (known or not, so a refusal says nothing about which names exist) and
against the client address (an IPv6 client by its /64, which one host usually holds whole). After
``signin_free_failures`` failures a key waits ``signin_backoff_base_s``, doubled by each further failure, up to
``signin_backoff_max_s``; while it waits, sign-ins are refused (429, ``Retry-After``) without checking the password.
The counts live in the store (``hub.store.sessions``), so every ``hub serve`` worker process shares them.
"""

from __future__ import annotations

import ipaddress

from hub.config import Settings


def keys(name: str, client: str) -> list[str]:
    """The throttling keys of one attempt: ``account:<name>`` and ``address:<client or its IPv6 /64>``."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        where = client[:64]
    else:
        where = str(ipaddress.ip_network(f"{address}/64", strict=False)) if address.version == 6 else str(address)
    return [f"account:{name.strip().casefold()[:128]}", f"address:{where}"]


def backoff_s(settings: Settings, failures: int) -> float:
    """Seconds a key with ``failures`` recent failures must wait before its next attempt (0: none)."""
    beyond = failures - settings.signin_free_failures
    if beyond < 0:
        return 0.0
    return float(min(settings.signin_backoff_max_s, settings.signin_backoff_base_s * 2 ** min(beyond, 40)))
