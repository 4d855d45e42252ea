"""Canonical packets: XSDs, models, the codec between them and the issues reported for bad payloads."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from lxml import etree
from pydantic import BaseModel, ValidationError

from hub import packets
from hub.errors import Issue, PacketInvalidError, UnknownMessageTypeError, XmlRejectedError
from hub.packets import codec
from hub.packets.citizen import CitizenLookup, CitizenRecord, LookupResult
from hub.packets.common import FeeLine
from hub.packets.dossier import DossierStatusUpdate, DossierSync
from hub.packets.issues import model_issues, xsd_rule
from hub.packets.payment import PaymentReceipt, PaymentRequest
from hub.packets.schemas import schema_bytes
from hub.xmlparse import parse_xml

NS = "urn:lienthong:packet:1"
TYPES = sorted(packets.PACKET_TYPES)
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}

EXPECTED_ROOTS = {
    "dossier.sync": "dossierSync",
    "dossier.status": "dossierStatus",
    "citizen.lookup": "citizenLookup",
    "citizen.record": "citizenRecord",
    "payment.request": "paymentRequest",
    "payment.receipt": "paymentReceipt",
    "postal.order": "postalOrder",
    "postal.status": "postalStatus",
}


def _line_of(xml: bytes, needle: bytes) -> int:
    """1-based line of the first occurrence of ``needle``."""
    index = xml.index(needle)
    return xml[:index].count(b"\n") + 1


def _only(issues: list[Issue]) -> Issue:
    assert len(issues) == 1, issues
    return issues[0]


# --- registry -------------------------------------------------------------------------------------


def test_registry_names_and_roots_are_the_contract() -> None:
    assert packets.PACKET_NAMESPACE == NS
    assert {name: t.root for name, t in packets.PACKET_TYPES.items()} == EXPECTED_ROOTS
    for name, ptype in packets.PACKET_TYPES.items():
        assert ptype.name == name
        assert issubclass(ptype.model, BaseModel)
        assert packets.packet_type(name) is ptype


def test_unknown_type_lists_the_valid_names() -> None:
    with pytest.raises(UnknownMessageTypeError) as info:
        packets.packet_type("dossier.nope")
    assert "dossier.nope" in str(info.value)
    for name in EXPECTED_ROOTS:
        assert name in str(info.value)
    with pytest.raises(UnknownMessageTypeError):
        packets.example("dossier.nope")
    with pytest.raises(UnknownMessageTypeError):
        packets.validate_xml("dossier.nope", b"<a/>")


@pytest.mark.parametrize("name", TYPES)
def test_packet_type_for_element(name: str) -> None:
    element = packets.to_element(packets.example(name))
    assert packets.packet_type_for_element(element) is packets.packet_type(name)


@pytest.mark.parametrize(
    "xml", [b"<dossierSync/>", b'<x:dossierSync xmlns:x="urn:other"/>', b'<nope xmlns="urn:lienthong:packet:1"/>']
)
def test_packet_type_for_element_rejects_foreign_roots(xml: bytes) -> None:
    with pytest.raises(PacketInvalidError) as info:
        packets.packet_type_for_element(parse_xml(xml))
    assert [issue.rule for issue in info.value.issues] == ["root-element"]


def test_schema_is_compiled_once() -> None:
    ptype = packets.packet_type("dossier.sync")
    assert isinstance(ptype.schema, etree.XMLSchema)
    assert ptype.schema is ptype.schema
    assert packets.packet_type("payment.request").schema is not ptype.schema


def test_to_element_refuses_non_packet_models() -> None:
    with pytest.raises(TypeError):
        packets.to_element(FeeLine(code="A", name="x", amount=1))


# --- examples, XSDs and round trips ----------------------------------------------------------------


@pytest.mark.parametrize("name", TYPES)
def test_example_validates_against_its_xsd(name: str) -> None:
    ptype = packets.packet_type(name)
    model = packets.example(name)
    assert isinstance(model, ptype.model)
    element = packets.to_element(model)
    assert element.tag == f"{{{NS}}}{ptype.root}"
    assert ptype.schema.validate(element), ptype.schema.error_log
    assert packets.validate_element(name, element) == []
    assert packets.validate_xml(name, packets.to_xml(model)) == []


@pytest.mark.parametrize("name", TYPES)
def test_round_trip_model_xml_model(name: str) -> None:
    model = packets.example(name)
    again = packets.from_xml(name, packets.to_xml(model))
    assert type(again) is type(model)
    assert again == model
    assert packets.from_element(name, packets.to_element(model)) == model


@pytest.mark.parametrize("name", TYPES)
def test_round_trip_xml_model_xml(name: str) -> None:
    xml = packets.to_xml(packets.example(name))
    assert packets.to_xml(packets.from_xml(name, xml)) == xml


@pytest.mark.parametrize("name", TYPES)
def test_round_trip_through_json(name: str) -> None:
    model = packets.example(name)
    cls = type(model)
    assert cls.model_validate_json(model.model_dump_json()) == model
    assert cls.model_validate_json(model.model_dump_json(by_alias=True)) == model
    assert cls.model_validate(model.model_dump()) == model


@pytest.mark.parametrize("name", TYPES)
def test_xml_form(name: str) -> None:
    xml = packets.to_xml(packets.example(name))
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")
    assert f'<p:{EXPECTED_ROOTS[name]} xmlns:p="{NS}">'.encode() in xml
    assert b"\n  <" in xml  # pretty-printed
    xml.decode("utf-8")


@pytest.mark.parametrize("name", TYPES)
def test_xsd_sequence_follows_model_field_order(name: str) -> None:
    ptype = packets.packet_type(name)
    xsd = etree.fromstring(schema_bytes(ptype.xsd))
    (root_decl,) = xsd.xpath("xs:element", namespaces=XS)
    assert root_decl.get("name") == ptype.root
    (complex_type,) = xsd.xpath(f"xs:complexType[@name='{root_decl.get('type')}']", namespaces=XS)
    names = [
        e.get("name")
        for e in complex_type.xpath("xs:sequence/xs:element | xs:sequence/xs:choice/xs:element", namespaces=XS)
    ]
    assert names == [field.alias for field in ptype.model.model_fields.values()]
    include = xsd.xpath("xs:include/@schemaLocation", namespaces=XS)
    assert include == ["common.xsd"]


def test_list_convention_wrapper_and_items() -> None:
    element = packets.to_element(packets.example("dossier.sync"))
    documents = element.find(f"{{{NS}}}documents")
    assert documents is not None
    assert [etree.QName(child).localname for child in documents] == ["document", "document"]
    assert [etree.QName(c).localname for c in element.find(f"{{{NS}}}fees")] == ["fee", "fee"]
    fee_lines = packets.to_element(packets.example("payment.request")).find(f"{{{NS}}}feeLines")
    assert [etree.QName(c).localname for c in fee_lines] == ["feeLine", "feeLine"]


def test_empty_list_omits_the_wrapper_and_an_empty_wrapper_is_invalid() -> None:
    model = packets.example("dossier.sync").model_copy(update={"documents": [], "results": []})
    xml = packets.to_xml(model)
    assert b"<p:documents" not in xml and b"<p:results" not in xml
    assert packets.from_xml("dossier.sync", xml) == model
    bad = xml.replace(b"  <p:fees>", b"  <p:documents/>\n  <p:fees>")
    issue = packets.validate_xml("dossier.sync", bad)[0]
    assert issue.rule.startswith("xsd:")
    assert issue.path == "/dossierSync/documents"


def test_none_fields_are_omitted() -> None:
    model = packets.example("dossier.status").model_copy(update={"step_due": None, "attachments": []})
    xml = packets.to_xml(model)
    assert b"stepDue" not in xml and b"attachments" not in xml
    assert packets.from_xml("dossier.status", xml) == model


def test_comments_and_whitespace_around_numbers_and_dates_are_tolerated() -> None:
    xml = packets.to_xml(packets.example("dossier.status"))
    xml = xml.replace(b"<p:status>4</p:status>", b"<p:status>\n    4 <!-- processing -->\n  </p:status>")
    xml = xml.replace(b"<p:at>", b"<!-- step time --><p:at> ")
    assert packets.validate_xml("dossier.status", xml) == []
    assert packets.from_xml("dossier.status", xml) == packets.example("dossier.status")


def test_signed_receipt_is_standard_base64_and_may_wrap_lines() -> None:
    receipt = bytes(range(256)) * 2  # exercises '+' and '/' in the alphabet
    model = packets.example("payment.receipt").model_copy(update={"signed_receipt": receipt})
    model = PaymentReceipt.model_validate(model.model_dump())
    xml = packets.to_xml(model)
    text = base64.b64encode(receipt)
    assert text in xml
    wrapped = b"\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert packets.from_xml("payment.receipt", xml.replace(text, wrapped)).signed_receipt == receipt
    urlsafe = xml.replace(text, base64.urlsafe_b64encode(receipt))
    assert _only(packets.validate_xml("payment.receipt", urlsafe)).rule == "xsd:datatype"


# --- datetimes -----------------------------------------------------------------------------------


def test_datetimes_are_written_in_utc_with_z() -> None:
    local = timezone(timedelta(hours=7))
    model = packets.example("postal.status").model_copy(update={"at": datetime(2025, 12, 6, 10, 0, tzinfo=local)})
    model = type(model).model_validate(model.model_dump())
    assert model.at == datetime(2025, 12, 6, 3, 0, tzinfo=UTC)
    assert model.at.utcoffset() == timedelta(0)
    assert b"<p:at>2025-12-06T03:00:00Z</p:at>" in packets.to_xml(model)


def test_offset_datetimes_in_xml_are_read_as_utc() -> None:
    xml = packets.to_xml(packets.example("postal.status"))
    xml = xml.replace(b"<p:at>2025-11-06T03:00:00Z</p:at>", b"<p:at>2025-11-06T10:00:00+07:00</p:at>")
    assert b"+07:00" in xml
    model = packets.from_xml("postal.status", xml)
    assert model == packets.example("postal.status")
    assert model.at.tzinfo is UTC


def test_naive_datetime_is_rejected_in_python() -> None:
    data = packets.example("postal.status").model_dump()
    data["at"] = datetime(2025, 11, 6, 3, 0)  # naive: the point of the test
    with pytest.raises(ValidationError) as info:
        type(packets.example("postal.status")).model_validate(data)
    assert info.value.errors()[0]["type"] == "timezone_aware"
    assert info.value.errors()[0]["loc"] == ("at",)


def test_naive_datetime_is_rejected_in_xml_with_line_and_path() -> None:
    xml = packets.to_xml(packets.example("dossier.sync"))
    xml = xml.replace(b"<p:submittedAt>2025-11-23T01:15:00Z<", b"<p:submittedAt>2025-11-23T01:15:00<")
    issue = _only(packets.validate_xml("dossier.sync", xml))
    assert issue.rule == "xsd:pattern"
    assert issue.path == "/dossierSync/submittedAt"
    assert issue.line == _line_of(xml, b"<p:submittedAt>")


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_datetime_utc_cannot_represent_is_an_issue_not_an_overflow(at: str) -> None:
    xml = packets.to_xml(packets.example("postal.status"))
    xml = xml.replace(b"<p:at>2025-11-06T03:00:00Z</p:at>", f"<p:at>{at}</p:at>".encode())
    issue = _only(packets.validate_xml("postal.status", xml))
    assert (issue.rule, issue.path) == ("datetime-range", "/postalStatus/at")
    assert at in issue.message


def test_partner_local_times_utc_cannot_represent_are_mapping_errors() -> None:
    from hub.errors import MappingError
    from mappings import ministry_steps, national_portal, payment, postal

    first = "00010101000000"  # 1 January of year 1 at 00:00 in UTC+7 is in year 0 in UTC
    with pytest.raises(ValueError, match="first representable"):
        ministry_steps.local_to_utc(first)
    for read in (payment.from_local_time, national_portal.from_portal_time):
        with pytest.raises(MappingError):
            read(first)
    before_year_1 = -62_135_596_800_001  # VNPost's EventTime is epoch milliseconds (OC-SDK MRhDoc)
    with pytest.raises(MappingError):
        postal.status_from_doc({"OrderNumber": "X1", "StatusCode": 4, "EventTime": before_year_1}, {})


# --- issues: XSD stage ----------------------------------------------------------------------------


def test_xsd_error_carries_line_path_and_rule() -> None:
    xml = packets.to_xml(packets.example("dossier.sync")).replace(b"001099012345", b"003099012345")
    issue = _only(packets.validate_xml("dossier.sync", xml))
    assert issue.rule == "xsd:pattern"
    assert issue.path == "/dossierSync/applicant/personalId"
    assert issue.line == _line_of(xml, b"<p:personalId>")
    assert "003099012345" in issue.message
    assert NS not in issue.message


@pytest.mark.parametrize("prefix", [None, "lt"])
def test_readers_accept_any_prefix_or_the_default_namespace(prefix: str | None) -> None:
    model = packets.example("dossier.sync")
    element = codec.encode(model, "dossierSync", NS, prefix)
    xml = etree.tostring(element, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    assert packets.from_xml("dossier.sync", xml) == model
    # libxml2 names default-namespace elements "*" in its error paths; the issue path is still readable.
    _assert_second_digest_reported(model, xml)


def test_xsd_path_indexes_repeated_siblings() -> None:
    model = packets.example("dossier.sync")
    _assert_second_digest_reported(model, packets.to_xml(model))


def _assert_second_digest_reported(model, xml: bytes) -> None:
    """Spoil the second document's digest: the issue names that sibling by index, and its line."""
    bad = xml.replace(model.documents[1].sha256.encode(), b"not-a-digest")
    issue = _only(packets.validate_xml("dossier.sync", bad))
    assert issue.path == "/dossierSync/documents/document[2]/sha256"
    assert issue.line == _line_of(bad, b"not-a-digest")


def test_xsd_reports_every_error_and_missing_or_unexpected_elements() -> None:
    xml = packets.to_xml(packets.example("postal.status"))
    xml = xml.replace(b"<p:orderNumber>EL123456789VN</p:orderNumber>", b"")
    xml = xml.replace(
        b"<p:dossierCode>000.00.00.H12-251123-0042</p:dossierCode>", b"<p:dossierCode>H12-2511-42</p:dossierCode>"
    )
    issues = packets.validate_xml("postal.status", xml)
    assert [i.path for i in issues] == ["/postalStatus/dossierCode", "/postalStatus/statusCode"]
    assert issues[0].rule == "xsd:pattern"
    assert issues[1].rule == "xsd:element-content"
    assert "orderNumber" in issues[1].message
    assert all(i.line for i in issues)


def test_model_rules_only_run_when_the_xsd_passes() -> None:
    # amount != sum of fee lines (a model rule) AND a bad phone (an XSD rule): only the XSD issue shows.
    xml = packets.to_xml(packets.example("payment.request"))
    xml = xml.replace(b"<p:amount>575000</p:amount>", b"<p:amount>1</p:amount>", 1).replace(b"0912345678", b"abc")
    issue = _only(packets.validate_xml("payment.request", xml))
    assert issue.rule == "xsd:pattern" and issue.path == "/paymentRequest/payer/phone"


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("SCHEMAV_CVC_PATTERN_VALID", "xsd:pattern"),
        ("SCHEMAV_CVC_DATATYPE_VALID_1_2_1", "xsd:datatype"),
        ("SCHEMAV_CVC_MINLENGTH_VALID", "xsd:minlength"),
        ("SCHEMAV_CVC_ENUMERATION_VALID", "xsd:enumeration"),
        ("SCHEMAV_ELEMENT_CONTENT", "xsd:element-content"),
        ("SCHEMAV_CVC_COMPLEX_TYPE_2_4", "xsd:complex-type"),
    ],
)
def test_xsd_rule_names(type_name: str, expected: str) -> None:
    assert xsd_rule(type_name) == expected


def test_payload_inside_another_document_reports_paths_from_the_packet_root() -> None:
    payload = packets.to_xml(packets.example("dossier.status")).split(b"\n", 1)[1]
    payload = payload.replace(b"<p:sourceSystem>000.00.00.G10<", b"<p:sourceSystem>G10<")
    document = b'<envelope xmlns="urn:env">\n<header/>\n<body>\n' + payload + b"</body>\n</envelope>"
    root = parse_xml(document)
    element = root.find("{urn:env}body")[0]
    issue = _only(packets.validate_element("dossier.status", element))
    assert issue.path == "/dossierStatus/sourceSystem"
    assert issue.line == _line_of(document, b"<p:sourceSystem>")


# --- issues: root element, parsing ----------------------------------------------------------------


def test_wrong_root_element_is_reported() -> None:
    xml = packets.to_xml(packets.example("dossier.status"))
    issue = _only(packets.validate_xml("dossier.sync", xml))
    assert issue.rule == "root-element"
    assert issue.path == "/dossierStatus"
    assert issue.line == 2
    assert "dossierSync" in issue.message
    with pytest.raises(PacketInvalidError) as info:
        packets.from_xml("dossier.sync", xml)
    assert [i.rule for i in info.value.issues] == ["root-element"]


def test_right_name_in_the_wrong_namespace_is_a_root_element_issue() -> None:
    xml = packets.to_xml(packets.example("postal.status")).replace(NS.encode(), b"urn:lienthong:packet:2")
    assert _only(packets.validate_xml("postal.status", xml)).rule == "root-element"


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"<dossierSync", "xml-wellformed"),
        (b"", "xml-wellformed"),
        (b'<!DOCTYPE a [<!ENTITY x "y">]><dossierSync xmlns="urn:lienthong:packet:1"/>', "xml-no-dtd"),
    ],
)
def test_parse_errors_become_issues(data: bytes, rule: str) -> None:
    assert _only(packets.validate_xml("dossier.sync", data)).rule == rule
    with pytest.raises(XmlRejectedError):
        packets.from_xml("dossier.sync", data)


def test_from_element_raises_packet_invalid_with_all_issues() -> None:
    xml = packets.to_xml(packets.example("dossier.sync"))
    xml = xml.replace(b"<p:channel>2</p:channel>", b"<p:channel>4</p:channel>").replace(
        b"<p:status>10<", b"<p:status>0<"
    )
    with pytest.raises(PacketInvalidError) as info:
        packets.from_element("dossier.sync", parse_xml(xml))
    assert [(i.path, i.rule) for i in info.value.issues] == [
        ("/dossierSync/channel", "xsd:maxinclusive"),
        ("/dossierSync/status", "xsd:mininclusive"),
    ]
    assert "dossier.sync" in str(info.value)


# --- issues: model (domain) stage -----------------------------------------------------------------


def test_dossier_code_with_impossible_date_is_caught_after_the_xsd() -> None:
    xml = packets.to_xml(packets.example("dossier.sync")).replace(b"H12-251123-0042", b"H12-250230-0042")
    issue = _only(packets.validate_xml("dossier.sync", xml))
    assert issue.rule == "dossier-code"
    assert issue.path == "/dossierSync/dossierCode"
    assert issue.line == _line_of(xml, b"<p:dossierCode>")
    assert "250230" in issue.message


def test_domain_issue_inside_a_list_names_the_item_and_its_line() -> None:
    # Every list-item rule is mirrored in the XSD, so map a model error against the element directly.
    xml = packets.to_xml(packets.example("dossier.sync"))
    element = parse_xml(xml)
    data = packets.example("dossier.sync").model_dump()
    data["documents"][1]["sha256"] = "xyz"
    with pytest.raises(ValidationError) as info:
        DossierSync.model_validate(data)
    (issue,) = model_issues(info.value, element)
    assert (issue.path, issue.rule) == ("/dossierSync/documents/document[2]/sha256", "sha256")
    second = packets.example("dossier.sync").documents[1].sha256.encode()
    assert issue.line == _line_of(xml, second)


def test_payment_amount_must_equal_sum_of_fee_lines() -> None:
    example = packets.example("payment.request")
    data = example.model_dump()
    data["amount"] = 575_001
    with pytest.raises(ValidationError) as info:
        PaymentRequest.model_validate(data)
    assert info.value.errors()[0]["type"] == "amount-equals-fee-lines"

    xml = packets.to_xml(example).replace(b"<p:amount>575000</p:amount>", b"<p:amount>575001</p:amount>")
    issue = _only(packets.validate_xml("payment.request", xml))
    assert issue.rule == "amount-equals-fee-lines"
    assert issue.path == "/paymentRequest/amount"
    assert issue.line == _line_of(xml, b"<p:amount>575001")
    assert "575001" in issue.message and "575000" in issue.message


def test_payment_request_needs_a_fee_line_and_fixed_currency() -> None:
    data = packets.example("payment.request").model_dump()
    with pytest.raises(ValidationError):
        PaymentRequest.model_validate({**data, "fee_lines": [], "amount": 0})
    with pytest.raises(ValidationError):
        PaymentRequest.model_validate({**data, "currency": "USD"})
    xml = packets.to_xml(packets.example("payment.request")).replace(b"<p:currency>VND<", b"<p:currency>USD<")
    assert _only(packets.validate_xml("payment.request", xml)).rule == "xsd:enumeration"


def _lookup(**changes: object) -> dict[str, object]:
    data = packets.example("citizen.lookup").model_dump()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"old_id": "012345678"}, "one-of-personal-id-old-id"),  # both
        ({"personal_id": None}, "one-of-personal-id-old-id"),  # neither
        ({"birth_year": 1999}, "one-of-birth-date-birth-year"),  # both
        ({"birth_date": None}, "one-of-birth-date-birth-year"),  # neither
    ],
)
def test_citizen_lookup_exactly_one_id_and_birth(changes: dict[str, object], rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        CitizenLookup.model_validate(_lookup(**changes))
    assert [e["type"] for e in info.value.errors()] == [rule]


def test_citizen_lookup_alternatives_are_valid() -> None:
    model = CitizenLookup.model_validate(
        _lookup(personal_id=None, old_id="012345678", birth_date=None, birth_year=1999)
    )
    xml = packets.to_xml(model)
    assert b"<p:oldId>012345678</p:oldId>" in xml and b"<p:birthYear>1999</p:birthYear>" in xml
    assert packets.from_xml("citizen.lookup", xml) == model


def test_citizen_lookup_both_or_neither_in_xml_is_an_xsd_issue() -> None:
    xml = packets.to_xml(packets.example("citizen.lookup"))
    both = xml.replace(b"<p:fullName>", b"<p:oldId>012345678</p:oldId>\n  <p:fullName>")
    issue = _only(packets.validate_xml("citizen.lookup", both))
    assert issue.rule == "xsd:element-content" and issue.path == "/citizenLookup/oldId"
    neither = xml.replace(b"<p:personalId>001099012345</p:personalId>", b"")
    assert _only(packets.validate_xml("citizen.lookup", neither)).rule == "xsd:element-content"


def test_citizen_record_citizen_iff_found() -> None:
    record = packets.example("citizen.record")
    assert record.result is LookupResult.FOUND
    with pytest.raises(ValidationError) as info:
        CitizenRecord(request_id="R-1", result=LookupResult.FOUND)
    assert info.value.errors()[0]["type"] == "citizen-iff-found"
    with pytest.raises(ValidationError):
        CitizenRecord(request_id="R-1", result=LookupResult.NOT_FOUND, citizen=record.citizen)
    assert CitizenRecord(request_id="R-1", result=LookupResult.MISMATCH).citizen is None

    xml = packets.to_xml(record).replace(b"<p:result>found<", b"<p:result>not_found<")
    issue = _only(packets.validate_xml("citizen.record", xml))
    assert (issue.rule, issue.path) == ("citizen-iff-found", "/citizenRecord/citizen")
    assert issue.line == _line_of(xml, b"<p:citizen>")
    missing = CitizenRecord(request_id="R-1", result=LookupResult.NOT_FOUND)
    xml = packets.to_xml(missing).replace(b"not_found", b"found")
    issue = _only(packets.validate_xml("citizen.record", xml))
    assert (issue.rule, issue.path) == ("citizen-iff-found", "/citizenRecord/citizen")


def test_models_reject_unknown_fields_and_are_immutable() -> None:
    data = packets.example("dossier.status").model_dump()
    with pytest.raises(ValidationError):
        DossierStatusUpdate.model_validate({**data, "colour": "red"})
    model = packets.example("dossier.status")
    with pytest.raises(ValidationError):
        model.status = 5  # type: ignore[misc]


def test_models_accept_snake_case_in_python_and_camel_case_aliases() -> None:
    model = packets.example("dossier.sync")
    assert isinstance(model, DossierSync)
    by_alias = model.model_dump(by_alias=True)
    assert "dossierCode" in by_alias and "componentCode" in by_alias["documents"][0]
    assert DossierSync.model_validate(by_alias) == model


def test_python_ints_are_strict() -> None:
    data = packets.example("dossier.sync").model_dump()
    for bad in ("2", 2.0, True):
        with pytest.raises(ValidationError) as info:
            DossierSync.model_validate({**data, "channel": bad})
        assert info.value.errors()[0]["type"] == "channel"


def test_birth_date_is_a_date() -> None:
    model = packets.example("citizen.lookup")
    assert model.birth_date == date(1999, 4, 17)
    xml = packets.to_xml(model).replace(b"1999-04-17", b"1999-02-30")
    assert _only(packets.validate_xml("citizen.lookup", xml)).rule.startswith("xsd:")


def test_validation_is_thread_safe() -> None:
    good = packets.to_xml(packets.example("postal.status"))
    bad = good.replace(b"EL123456789VN", b"bad code!")
    failures: list[str] = []

    def work(data: bytes, expect_valid: bool) -> None:
        for _ in range(200):
            issues = packets.validate_xml("postal.status", data)
            if (issues == []) != expect_valid or (issues and issues[0].path != "/postalStatus/orderNumber"):
                failures.append(repr(issues))

    threads = [threading.Thread(target=work, args=(good if i % 2 else bad, bool(i % 2))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize(
    ("old", "new", "rule", "path"),
    [
        (b"a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607", b"001099012345", "portal-account-id",
         "/dossierSync/applicant/portalAccountId"),  # a 12-digit personal ID as MaDoiTuong (OC-DV:196-205)
        (b"a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607", b"123456789", "portal-account-id",
         "/dossierSync/applicant/portalAccountId"),  # a 9-digit identity card number
        ("Ủy ban nhân dân quận Hải Châu".encode(), b"000.00.00.H12", "unit-name",
         "/dossierSync/receivingUnitName"),  # an agency code as DonViXuLy (OC-DV:222)
    ],
)  # fmt: skip
def test_dossier_sync_refuses_an_id_as_the_portal_account_or_a_code_as_the_unit_name(
    old: bytes, new: bytes, rule: str, path: str
) -> None:
    xml = packets.to_xml(packets.example("dossier.sync"))
    assert old in xml
    issue = _only(packets.validate_xml("dossier.sync", xml.replace(old, new)))
    assert (issue.rule, issue.path) == (rule, path)
    with pytest.raises(PacketInvalidError) as refused:
        packets.from_xml("dossier.sync", xml.replace(old, new))
    assert [i.rule for i in refused.value.issues] == [rule]
    sync = packets.example("dossier.sync")
    with pytest.raises(ValidationError) as info:
        DossierSync.model_validate(
            sync.model_dump() | {"receiving_unit_name": new.decode()}
            if rule == "unit-name"
            else sync.model_dump() | {"applicant": sync.applicant.model_dump() | {"portal_account_id": new.decode()}}
        )
    assert [e["type"] for e in info.value.errors()] == [rule]
