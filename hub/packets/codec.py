"""One generic codec between packet models and XML elements, driven by the models' fields.

Hand-written because no library maps pydantic models to XSD-shaped XML; one ~100-line codec replaces
eight hand-written encoder/decoder pairs. Values go through pydantic itself both ways:
``model_dump(mode="json")`` gives the text of each leaf; the leaves read back are handed to
``model_validate_json`` (pydantic's string-input mode cannot take lists), which parses them as JSON input.

Rules:
- a field becomes a child element named by its alias (snake_case -> camelCase), in field order;
- a nested model becomes a child element holding the nested fields;
- a list field must be declared ``Annotated[list[Item], XmlItem("item")]`` and becomes a wrapper element
  named after the field with one ``<item>`` per entry; an empty list is written by omitting the wrapper;
- ``None`` is written by omitting the element.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

from lxml import etree
from pydantic import AwareDatetime, BaseModel

M = TypeVar("M", bound=BaseModel)

# Leaf types whose XSD counterparts collapse whitespace (pydantic's AwareDatetime is no datetime subclass).
_STRIPPED = (int, date, datetime, AwareDatetime)


@dataclass(frozen=True, slots=True)
class XmlItem:
    """``Annotated`` marker on a list field: the element name of each entry inside the wrapper."""

    name: str


@dataclass(frozen=True, slots=True)
class _Slot:
    tag: str  # element local name (the field's alias)
    model: type[BaseModel] | None  # nested model (of the entries, for a list)
    item: str | None  # entry element name when the field is a list
    whitespace: str  # "preserve" (strings), "strip" (numbers, dates) or "remove" (base64 may wrap lines)


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _whitespace(base: Any) -> str:
    """How XSD treats whitespace around this leaf's text (xs:string preserves it, other types collapse)."""
    if isinstance(base, type) and issubclass(base, bytes):
        return "remove"
    if isinstance(base, type) and issubclass(base, _STRIPPED):
        return "strip"
    return "preserve"


@cache
def _slot_map(cls: type[BaseModel]) -> dict[str, _Slot]:
    return {slot.tag: slot for slot in _slots(cls)}


@cache
def _slots(cls: type[BaseModel]) -> tuple[_Slot, ...]:
    slots = []
    for name, info in cls.model_fields.items():
        annotation = _strip_optional(info.annotation)
        item = next((m.name for m in info.metadata if isinstance(m, XmlItem)), None)
        if get_origin(annotation) is list:
            if item is None:
                raise TypeError(f"{cls.__name__}.{name}: a list field needs an XmlItem(...) marker")
            (annotation,) = get_args(annotation)
        base = get_args(annotation)[0] if get_origin(annotation) is not None else annotation
        is_model = isinstance(base, type) and issubclass(base, BaseModel)
        slots.append(_Slot(info.alias or name, base if is_model else None, item, _whitespace(base)))
    return tuple(slots)


def _leaf_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write(parent: etree._Element, cls: type[BaseModel], data: dict[str, Any], ns: str) -> None:
    for slot in _slots(cls):
        if slot.tag not in data:
            continue
        value = data[slot.tag]
        if slot.item is None:
            _write_value(parent, slot.tag, slot.model, value, ns)
        elif value:
            wrapper = etree.SubElement(parent, f"{{{ns}}}{slot.tag}")
            for entry in value:
                _write_value(wrapper, slot.item, slot.model, entry, ns)


def _write_value(parent: etree._Element, tag: str, model: type[BaseModel] | None, value: Any, ns: str) -> None:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}")
    if model is None:
        element.text = _leaf_text(value)
    else:
        _write(element, model, value, ns)


def encode(model: BaseModel, root: str, namespace: str, prefix: str | None = None) -> etree._Element:
    """``model`` as a new element ``{namespace}root``, its namespace bound to ``prefix`` (None: default)."""
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    element = etree.Element(f"{{{namespace}}}{root}", nsmap={prefix: namespace})
    _write(element, type(model), data, namespace)
    return element


def _children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]  # elements only: no comments or PIs


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text(element: etree._Element) -> str:
    # A leaf with no child nodes at all has all its text in .text; otherwise comments split it up.
    return (element.text or "") if len(element) == 0 else "".join(element.itertext())


def _read_value(element: etree._Element, slot: _Slot) -> Any:
    if slot.model is not None:
        return read(slot.model, element)
    text = _text(element)
    if slot.whitespace == "strip":
        return text.strip()
    if slot.whitespace == "remove":
        return "".join(text.split())
    return text


def read(cls: type[BaseModel], element: etree._Element) -> dict[str, Any]:
    """The children of ``element`` as a nested dict of strings and lists, keyed by element name.

    Unknown children are passed through by name so that the model (``extra="forbid"``) reports them.
    """
    slots = _slot_map(cls)
    data: dict[str, Any] = {}
    for child in _children(element):
        tag = _local(child.tag)
        slot = slots.get(tag)
        if slot is None:
            data[tag] = _text(child)
        elif slot.item is None:
            data[tag] = _read_value(child, slot)
        else:
            data[tag] = [_read_value(entry, slot) for entry in _children(child)]
    return data


def decode(cls: type[M], element: etree._Element) -> M:
    """Build ``cls`` from ``element``; raises ``pydantic.ValidationError`` (locations use the aliases)."""
    return cls.model_validate_json(json.dumps(read(cls, element)))
