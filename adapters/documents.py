"""Fetching a document a partner links to (a dossier's result file): one GET, bounded in size and time.

Hardened against the link: only ``http``/``https``; only hosts the connector allows, and no internal address unless
an admin named that host, connecting to the very address checked (``adapters.link_hosts``: refused before any request
with ``HostNotAllowedError``); redirects are not followed (a redirect answers as a refusal,
so a link cannot bounce the hub to another host); ``Accept-Encoding: identity`` and no decoding, so a compressed
answer cannot expand past the limit; the size is checked against ``Content-Length`` before reading and again while
reading; the whole read must end within the timeout (a server that drips bytes is cut off). Errors name the
link without its query or credentials (a link may carry an access token).

A timeout, an unreachable host, HTTP 408/425/429 or 5xx is transient (``TransientDeliveryError``: tried again
later); any other answer is permanent (``PermanentDeliveryError``; ``DocumentTooLargeError`` past the limit).
"""

from __future__ import annotations

import ipaddress
import time
from urllib.parse import urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from adapters.base import PermanentDeliveryError, TransientDeliveryError
from adapters.http import RETRYABLE_STATUS, partner_pool
from adapters.link_hosts import DEFAULT_PORTS, HostAllowList, Resolver, ip_literal, is_internal, resolve

CHUNK = 64 * 1024
ACCEPT = "application/pdf, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"


class DocumentTooLargeError(PermanentDeliveryError):
    """The document is larger than the caller accepts."""


class HostNotAllowedError(PermanentDeliveryError):
    """The link points at a host the connector does not allow, or at an internal address no admin opened: nothing
    was requested."""


def document_pool(*, timeout_s: float, max_connections: int = 4) -> urllib3.PoolManager:
    """The pool documents are fetched through (``adapters.http.partner_pool``: no transport retries)."""
    return partner_pool(timeout_s=timeout_s, max_connections=max_connections)


def shown(url: str) -> str:
    """``url`` as errors and logs show it: scheme, host, port and path only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def fetch_document(
    pool: urllib3.PoolManager,
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    hosts: HostAllowList,
    resolver: Resolver = resolve,
) -> bytes:
    """The bytes at ``url`` (at most ``max_bytes``, within ``timeout_s`` in all) if ``hosts`` lets its host through
    (checked before the name is resolved, and its addresses before connecting: ``adapters.link_hosts``); see the
    module for the errors."""
    where = shown(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise PermanentDeliveryError(f"{where}: only http and https links are fetched")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise PermanentDeliveryError(f"{where}: not a valid port") from None
    host = parts.hostname or ""
    addresses = _checked_addresses(host, port, hosts, resolver, where)
    netloc = f"[{host}]" if ":" in host else host
    request_target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    headers = {"Accept": ACCEPT, "Accept-Encoding": "identity", "Host": netloc if parts.port is None else
               f"{netloc}:{parts.port}"}  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        for index, address in enumerate(addresses):  # each address checked; the next only when one cannot connect
            target = pool.connection_from_host(
                address, port, parts.scheme,
                pool_kwargs={"server_hostname": host, "assert_hostname": host} if parts.scheme == "https" else None,
            )  # fmt: skip
            try:
                response = target.urlopen(
                    "GET", request_target, preload_content=False, decode_content=False, redirect=False, retries=False,
                    headers=headers, timeout=urllib3.Timeout(total=max(deadline - time.monotonic(), 0.001)),
                    assert_same_host=False,
                )  # fmt: skip
                break
            except NewConnectionError:
                if index == len(addresses) - 1 or time.monotonic() >= deadline:
                    raise
    except NewConnectionError:  # urllib3 makes it a timeout too: it is not one
        raise TransientDeliveryError(f"cannot fetch {where}: the host refused or cannot be reached") from None
    except Urllib3Timeout:
        raise TransientDeliveryError(f"timed out fetching {where}") from None
    except Urllib3Error as exc:
        raise TransientDeliveryError(f"cannot fetch {where}: {type(exc).__name__}") from None
    try:
        status = response.status
        if not 200 <= status < 300:
            redirect = " (redirects are not followed)" if 300 <= status < 400 else ""
            detail = f"{where} answered HTTP {status}{redirect}"
            if status in RETRYABLE_STATUS or status >= 500:
                raise TransientDeliveryError(detail, status=status)
            raise PermanentDeliveryError(detail, status=status)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise DocumentTooLargeError(f"{where} is {declared} bytes, more than the {max_bytes} accepted")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.stream(CHUNK, decode_content=False):
            size += len(chunk)
            if size > max_bytes:
                raise DocumentTooLargeError(f"{where} is more than the {max_bytes} bytes accepted")
            if time.monotonic() > deadline:
                raise TransientDeliveryError(f"timed out reading {where} ({size} bytes in {timeout_s:g} s)")
            chunks.append(chunk)
        return b"".join(chunks)
    except Urllib3Timeout:
        response.close()
        raise TransientDeliveryError(f"timed out reading {where}") from None
    except Urllib3Error as exc:
        response.close()
        raise TransientDeliveryError(f"cannot read {where}: {type(exc).__name__}") from None
    except BaseException:
        response.close()  # unread bytes left: the connection is not reused
        raise
    finally:
        response.release_conn()


def _checked_addresses(host: str, port: int, hosts: HostAllowList, resolver: Resolver, where: str) -> list[str]:
    """The addresses to connect to for ``host``, in the resolver's order: allowed by ``hosts`` (before any DNS
    query), resolved once, every address public unless the matching pattern names the host exactly
    (``HostPattern.names_exactly``). ``HostNotAllowedError`` when not; a name that does not resolve is transient
    (DNS may be back later)."""
    pattern = hosts.match(host, port)
    if pattern is None:
        raise HostNotAllowedError(f"{where}: {host}:{port} is not one of the connector's result_hosts ({hosts})")
    literal = ip_literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = list(resolver(host, port))
        except (OSError, UnicodeError):
            raise TransientDeliveryError(f"cannot fetch {where}: its host name does not resolve") from None
        if not addresses:
            raise TransientDeliveryError(f"cannot fetch {where}: its host name does not resolve")
    if not pattern.names_exactly and any(_internal(a) for a in addresses):
        raise HostNotAllowedError(
            f"{where}: {host} is an internal address (loopback, private or link-local); a link may reach one only "
            f"when result_hosts names that host exactly, not through {pattern}"
            + (" (the default: the connector's endpoint host)" if not pattern.explicit else "")
        )
    return addresses


def _internal(address: str) -> bool:
    try:
        return is_internal(ipaddress.ip_address(address))
    except ValueError:  # not an address the resolver should give: refused as if internal
        return True
