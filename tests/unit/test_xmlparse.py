"""The hardened parser refuses XXE, entity bombs, DTDs, oversize and over-deep documents with clear errors."""

from __future__ import annotations

import pytest

from hub.errors import XmlRejectedError
from hub.xmlparse import XmlLimits, parse_xml

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<dossierSync>&xxe;</dossierSync>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE note SYSTEM "http://127.0.0.1:9/evil.dtd">
<note>hi</note>"""


def _rule(exc: pytest.ExceptionInfo[XmlRejectedError]) -> str:
    return exc.value.issues[0].rule


@pytest.mark.parametrize("doc", [XXE, BILLION_LAUGHS, EXTERNAL_DTD], ids=["xxe", "billion-laughs", "external-dtd"])
def test_doctype_attacks_are_refused(doc: bytes) -> None:
    with pytest.raises(XmlRejectedError) as exc:
        parse_xml(doc)
    assert _rule(exc) == "xml-no-dtd"


def test_xxe_never_reads_the_file() -> None:
    with pytest.raises(XmlRejectedError) as exc:
        parse_xml(XXE)
    assert "root:" not in str(exc.value)


def test_oversize_document_is_refused_before_parsing() -> None:
    big = b"<a>" + b"x" * 2000 + b"</a>"
    with pytest.raises(XmlRejectedError) as exc:
        parse_xml(big, XmlLimits(max_bytes=1000))
    assert _rule(exc) == "xml-max-size"
    assert "1000" in exc.value.issues[0].message


def test_too_deep_document_is_refused_with_line() -> None:
    deep = b"<a>\n" * 70 + b"</a>" * 70
    with pytest.raises(XmlRejectedError) as exc:
        parse_xml(deep, XmlLimits(max_depth=64))
    assert _rule(exc) == "xml-max-depth"
    assert exc.value.issues[0].line == 65


def test_depth_at_the_limit_is_accepted() -> None:
    doc = b"<a>" * 64 + b"</a>" * 64
    assert parse_xml(doc, XmlLimits(max_depth=64)).tag == "a"


@pytest.mark.parametrize("doc", [b"", b"   ", b"<a>", b"<a></b>", b"not xml"])
def test_malformed_documents_get_a_wellformedness_error(doc: bytes) -> None:
    with pytest.raises(XmlRejectedError) as exc:
        parse_xml(doc)
    assert _rule(exc) == "xml-wellformed"


def test_plain_document_parses_and_keeps_text() -> None:
    root = parse_xml('<a xmlns="urn:x"><b>Nguyễn Văn A</b></a>')
    assert root[0].text == "Nguyễn Văn A"


def test_doctype_in_utf16_is_refused_too() -> None:
    with pytest.raises(XmlRejectedError):
        parse_xml(XXE.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"))
