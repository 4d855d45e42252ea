"""Loading the packet XSDs from the installed ``schemas`` package, compiled once and cached.

lxml (libxml2, XSD 1.0) validates in tens of microseconds; the pure-Python ``xmlschema`` is ~36x slower,
so it is kept off the hot path. ``xs:include`` is resolved from package data, never from the filesystem
path or the network, so this works from a wheel or a zip as well.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources

from lxml import etree

_BASE_URL = "lienthong-packets:/"
_local = threading.local()


def schema_bytes(filename: str) -> bytes:
    """The bytes of ``schemas/packets/<filename>``."""
    return resources.files("schemas").joinpath("packets", filename).read_bytes()


class _PackageResolver(etree.Resolver):
    """Serves ``xs:include``/``xs:import`` targets by file name from ``schemas/packets``."""

    def resolve(self, system_url: str, public_id: str | None, context: object) -> object:
        name = system_url.rsplit("/", 1)[-1]
        try:
            data = schema_bytes(name)
        except FileNotFoundError:
            return None
        return self.resolve_string(data, context, base_url=f"{_BASE_URL}{name}")


def load_schema(filename: str) -> etree.XMLSchema:
    """The compiled schema ``schemas/packets/<filename>``, compiled once per thread.

    An lxml validator keeps its error log on the object, so each thread gets its own instead of sharing
    one behind a lock (which serialised every validation in the API's thread pool).
    """
    cache: dict[str, etree.XMLSchema] = _local.__dict__.setdefault("schemas", {})
    schema = cache.get(filename)
    if schema is None:
        schema = cache[filename] = _compile(filename)
    return schema


@cache
def _document(filename: str) -> bytes:
    return schema_bytes(filename)


def _compile(filename: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
    parser.resolvers.add(_PackageResolver())
    document = etree.fromstring(_document(filename), parser=parser, base_url=f"{_BASE_URL}{filename}")
    return etree.XMLSchema(document)


def validate(schema: etree.XMLSchema, element: etree._Element) -> etree._ListErrorLog | None:
    """Validate ``element`` (a document root or a sub-element); ``None`` if valid, else the error log.

    ``schema`` must come from ``load_schema`` in the calling thread (its error log is per object).
    """
    if schema.validate(element):
        return None
    return schema.error_log
