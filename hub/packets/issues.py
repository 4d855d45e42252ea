"""Turning lxml XSD errors and pydantic validation errors into ``Issue``s with a path, rule and line.

Paths name elements by local name from the packet root, with a 1-based ``[n]`` only where siblings share
a name, e.g. ``/dossierSync/documents/document[2]/sha256``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lxml import etree
from pydantic import ValidationError

from hub.errors import Issue

_XSD_RULE = re.compile(r"SCHEMAV_(?:CVC_)?(?P<name>.*?)(?:_VALID)?(?:_[0-9]+)*")
_XSD_STEP = re.compile(r"(?P<name>[^\[]+)(?:\[(?P<index>[0-9]+)\])?")
_NAMESPACE_IN_MESSAGE = re.compile(r"\{[^}]*\}")


def _elements(element: etree._Element) -> list[etree._Element]:
    return list(element.iterchildren(etree.Element))


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def element_path(element: etree._Element, root: etree._Element) -> str:
    """The path of ``element`` from ``root`` (``root`` itself gives ``/rootName``)."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        name = _local(node)
        parent = None if node is root else node.getparent()
        if parent is not None:
            same = [sibling for sibling in _elements(parent) if sibling.tag == node.tag]
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


def xsd_rule(type_name: str) -> str:
    """A short rule name for a libxml2 schema error type: SCHEMAV_CVC_PATTERN_VALID -> ``xsd:pattern``."""
    match = _XSD_RULE.fullmatch(type_name)
    name = match["name"] if match else type_name
    return "xsd:" + name.lower().replace("_", "-")


def _element_at(libxml2_path: str, root: etree._Element) -> etree._Element | None:
    """Follow a libxml2 node path such as ``/*/*[3]/p:x[2]`` from ``root``.

    libxml2 writes ``*`` for elements in a default namespace, indexed among all element siblings; a
    prefixed or unqualified name is indexed among same-named siblings.
    """
    steps = libxml2_path.strip("/").split("/")
    if not steps or not steps[0]:
        return None
    node = root
    for step in steps[1:]:
        match = _XSD_STEP.fullmatch(step)
        if match is None:
            return None
        name, index = match["name"], int(match["index"] or 1) - 1
        candidates = [
            child
            for child in _elements(node)
            if name == "*" or name == (f"{child.prefix}:{_local(child)}" if child.prefix else _local(child))
        ]
        if index >= len(candidates):
            return None
        node = candidates[index]
    return node


def xsd_issues(error_log: Sequence[etree._LogEntry], root: etree._Element) -> list[Issue]:
    """One ``Issue`` per XSD error; a datatype error that only repeats the facet error before it is dropped."""
    issues: list[Issue] = []
    for entry in error_log:
        found = _element_at(entry.path or "", root)
        path = element_path(found, root) if found is not None else (entry.path or "/")
        rule = xsd_rule(entry.type_name)
        line = entry.line or None
        if rule == "xsd:datatype" and issues and (issues[-1].path, issues[-1].line) == (path, line):
            continue
        message = _NAMESPACE_IN_MESSAGE.sub("", entry.message).strip()
        issues.append(Issue(path=path, rule=rule, message=message, line=line))
    return issues


def _follow(root: etree._Element, loc: Sequence[int | str]) -> tuple[etree._Element, list[int | str]]:
    """The deepest element reached along a pydantic ``loc``, and the part of ``loc`` left over."""
    node = root
    for position, part in enumerate(loc):
        children = _elements(node)
        if isinstance(part, int):
            child = children[part] if part < len(children) else None
        else:
            child = next((c for c in children if _local(c) == part), None)
        if child is None:
            return node, list(loc[position:])
        node = child
    return node, []


def model_issues(error: ValidationError, root: etree._Element) -> list[Issue]:
    """One ``Issue`` per pydantic error; the rule is the error type (a validator's rule name for ours).

    A model-level rule may name the field it concerns in its context as ``field``.
    """
    issues = []
    for detail in error.errors(include_url=False):
        loc: list[int | str] = list(detail["loc"])
        field = (detail.get("ctx") or {}).get("field")
        if isinstance(field, str):
            loc.append(field)
        node, rest = _follow(root, loc)
        path = element_path(node, root) + "".join(
            f"[{part + 1}]" if isinstance(part, int) else f"/{part}" for part in rest
        )
        issues.append(Issue(path=path, rule=detail["type"], message=detail["msg"], line=node.sourceline))
    return issues
