"""Reference data: the shipped sample loads; a bad document is refused with a
ReferenceDataError that names the path of the offending value."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.reference.loader import (
    FORMAT,
    ReferenceDataError,
    parse_document,
    read_document,
    sample_document,
)
from medsettle.ledger.reference.models import Category, InstitutionKind, VisitKind


@pytest.fixture
def doc() -> dict[str, Any]:
    return sample_document()


def refused(doc: dict[str, Any]) -> str:
    with pytest.raises(ReferenceDataError) as info:
        parse_document(doc)
    return str(info.value)


# ---- the sample ------------------------------------------------------------


def test_sample_loads_with_what_the_product_needs(doc) -> None:
    data, persons = parse_document(doc)
    provinces = {region.province for region in data.regions.values()}
    assert len(provinces) >= 2
    # more than one region in a province: in-province cross-region settlement is possible
    assert any(sum(r.province == p for r in data.regions.values()) >= 2 for p in provinces)

    kinds = {i.kind for i in data.institutions.values()}
    assert kinds == set(InstitutionKind)
    for internet in (i for i in data.institutions.values() if i.kind == InstitutionKind.INTERNET_HOSPITAL):
        host = data.institutions[internet.host_code]
        assert host.kind == InstitutionKind.HOSPITAL
    assert all(i.admdvs in data.regions for i in data.institutions.values())

    assert {item.category for item in data.catalogue.values()} == set(Category)
    for item in data.catalogue.values():
        assert item.category == Category.B or item.selfpay_prop_bp == 0

    insutypes = {insutype for _, insutype in data.policies}
    assert insutypes == {310, 390}
    for policy in data.policies.values():
        assert policy.admdvs in data.regions
        assert policy.ratio_bp(VisitKind.OUTPATIENT, 3) is not None
    # every person has a policy for their insurance place and type
    assert persons
    for person in persons:
        assert data.policy(person.insuplc_admdvs, person.insutype) is not None
        assert person.acct_balc_fen >= 0


def test_every_hospital_visit_has_a_ratio(doc) -> None:
    """Every institution can settle every insured person: each policy has a
    ratio for each visit at each institution's level."""
    data, _ = parse_document(doc)
    for policy in data.policies.values():
        for institution in data.institutions.values():
            if institution.kind == InstitutionKind.PHARMACY:
                assert policy.ratio_bp(VisitKind.PHARMACY, institution.level) is not None
            else:
                assert policy.ratio_bp(VisitKind.OUTPATIENT, institution.level) is not None
                assert policy.ratio_bp(VisitKind.INPATIENT, institution.level) is not None


def test_the_sample_document_is_a_fresh_copy_each_time(doc) -> None:
    doc["regions"].clear()
    assert sample_document()["regions"]


def test_a_users_file_is_read_the_same_way(tmp_path: Path, doc) -> None:
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    assert read_document(path) == doc
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    with pytest.raises(ReferenceDataError, match="not JSON"):
        read_document(bad)


# ---- bad documents ---------------------------------------------------------


def test_wrong_format_is_refused(doc) -> None:
    doc["format"] = "medsettle-reference/2"
    assert refused(doc).startswith("format:")
    assert FORMAT in refused(doc)
    assert refused([]).startswith("format:")  # type: ignore[arg-type]


def test_unknown_region_of_an_institution(doc) -> None:
    doc["institutions"][3]["admdvs"] = "999999"
    message = refused(doc)
    assert message.startswith("institutions[3].admdvs:")
    assert "999999" in message


def test_unknown_region_of_a_policy_and_a_person(doc) -> None:
    doc["policies"][2]["admdvs"] = "990000"
    assert refused(doc).startswith("policies[2].admdvs:")
    doc = sample_document()
    doc["persons"][1]["insuplc_admdvs"] = "990000"
    assert refused(doc).startswith("persons[1].insuplc_admdvs:")


def test_bad_category(doc) -> None:
    doc["catalogue"]["national"][5]["category"] = "D"
    message = refused(doc)
    assert message.startswith("catalogue.national[5].category:")
    assert "'D'" in message


def test_bad_category_in_a_province_catalogue(doc) -> None:
    doc["catalogue"]["provinces"]["13"][0]["category"] = "甲"
    assert refused(doc).startswith("catalogue.provinces.13[0].category:")


def test_ratio_above_100_percent(doc) -> None:
    doc["policies"][4]["ratios_bp"]["inpatient"]["2"] = 10_001
    message = refused(doc)
    assert message.startswith("policies[4].ratios_bp.inpatient.2:")
    assert "10001" in message


def test_ratio_of_exactly_100_percent_is_allowed(doc) -> None:
    doc["policies"][4]["ratios_bp"]["inpatient"]["2"] = 10_000
    data, _ = parse_document(doc)
    policy = data.policy(doc["policies"][4]["admdvs"], doc["policies"][4]["insutype"])
    assert policy.ratio_bp(VisitKind.INPATIENT, 2) == 10_000


@pytest.mark.parametrize(
    ("where", "key", "path"),
    [
        (("regions", 0), "admdvs", "regions[0].admdvs"),
        (("regions", 2), "name", "regions[2].name"),
        (("institutions", 1), "kind", "institutions[1].kind"),
        (("institutions", 4), "level", "institutions[4].level"),
        (("policies", 0), "deductible_fen", "policies[0].deductible_fen"),
        (("policies", 3), "ratios_bp", "policies[3].ratios_bp"),
        (("persons", 0), "acct_balc_fen", "persons[0].acct_balc_fen"),
    ],
)
def test_missing_field(doc, where: tuple[str, int], key: str, path: str) -> None:
    section, index = where
    del doc[section][index][key]
    assert refused(doc) == f"{path}: missing"


def test_missing_catalogue_field(doc) -> None:
    del doc["catalogue"]["national"][2]["code"]
    assert refused(doc) == "catalogue.national[2].code: missing"


@pytest.mark.parametrize(
    ("path", "value", "prefix"),
    [
        (("regions", 1, "admdvs"), "44030", "regions[1].admdvs:"),
        (("regions", 1, "admdvs"), "440300\n", "regions[1].admdvs:"),  # a trailing newline is not a code
        (("regions", 1, "admdvs"), "４４０３００", "regions[1].admdvs:"),  # nor are full-width digits
        (("institutions", 0, "kind"), "clinic", "institutions[0].kind:"),
        (("institutions", 0, "level"), 4, "institutions[0].level:"),
        (("institutions", 0, "level"), "3", "institutions[0].level:"),
        (("institutions", 0, "level"), True, "institutions[0].level:"),
        (("institutions", 0, "code"), "H 1", "institutions[0].code:"),
        (("catalogue", "national", 0, "selfpay_prop_bp"), 500, "catalogue.national[0].selfpay_prop_bp:"),  # class A
        (("catalogue", "national", 2, "selfpay_prop_bp"), 10_001, "catalogue.national[2].selfpay_prop_bp:"),
        (("catalogue", "national", 2, "selfpay_prop_bp"), -1, "catalogue.national[2].selfpay_prop_bp:"),
        (("catalogue", "national", 0, "price_cap_fen"), 0, "catalogue.national[0].price_cap_fen:"),
        (("catalogue", "national", 0, "price_cap_fen"), 25.0, "catalogue.national[0].price_cap_fen:"),
        (("policies", 0, "insutype"), 320, "policies[0].insutype:"),
        (("policies", 0, "deductible_fen"), -1, "policies[0].deductible_fen:"),
        (("policies", 0, "annual_fund_cap_fen"), 10**14, "policies[0].annual_fund_cap_fen:"),
        (("policies", 0, "acct_allowed"), "yes", "policies[0].acct_allowed:"),
        (("policies", 0, "ratios_bp", "outpatient", "1"), -1, "policies[0].ratios_bp.outpatient.1:"),
        (("policies", 0, "ratios_bp", "outpatient", "1"), 0.9, "policies[0].ratios_bp.outpatient.1:"),
        (("persons", 0, "psn_no"), "4401-0001", "persons[0].psn_no:"),
        (("persons", 0, "insutype"), 391, "persons[0].insutype:"),
        (("persons", 0, "acct_balc_fen"), -100, "persons[0].acct_balc_fen:"),
    ],
)
def test_bad_value_names_its_path(doc, path: tuple, value: object, prefix: str) -> None:
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert refused(doc).startswith(prefix)


def test_unknown_visit_kind_in_ratios(doc) -> None:
    doc["policies"][1]["ratios_bp"]["telemedicine"] = {"3": 7000}
    assert refused(doc).startswith("policies[1].ratios_bp.telemedicine:")


@pytest.mark.parametrize(
    ("mutate", "prefix"),
    [
        (lambda d: d["regions"].__setitem__(1, "440300"), "regions[1]:"),  # a record that is not an object
        (lambda d: d["persons"].__setitem__(0, None), "persons[0]:"),
        (lambda d: d["catalogue"]["national"].__setitem__(3, 42), "catalogue.national[3]:"),
        (lambda d: d["policies"][0]["ratios_bp"].__setitem__("pharmacy", 7000), "policies[0].ratios_bp.pharmacy:"),
        (lambda d: d["policies"][0]["ratios_bp"]["outpatient"].__setitem__("x", 9000), "policies[0].ratios_bp.outpatient.x:"),
        (lambda d: d["policies"][0]["ratios_bp"]["outpatient"].__setitem__("4", 9000), "policies[0].ratios_bp.outpatient.4:"),
        (lambda d: d["policies"][0]["ratios_bp"]["outpatient"].__setitem__("1", True), "policies[0].ratios_bp.outpatient.1:"),
        (lambda d: d["catalogue"]["provinces"].__setitem__("13", {"code": "XB0201"}), "catalogue.provinces.13:"),
    ],
    ids=["region-not-object", "person-null", "item-number", "ratio-table-number", "level-not-number",
         "level-4", "ratio-bool", "province-catalogue-not-list"],
)
def test_wrong_shapes_are_refused_with_their_path(doc, mutate, prefix: str) -> None:
    mutate(doc)
    assert refused(doc).startswith(prefix)


def test_internet_hospital_needs_a_physical_host(doc) -> None:
    internet = next(i for i in doc["institutions"] if i["kind"] == "internet_hospital")
    pharmacy = next(i for i in doc["institutions"] if i["kind"] == "pharmacy")
    internet["host_code"] = pharmacy["code"]
    assert refused(doc).startswith(f"institutions.{internet['code']}.host_code:")
    del internet["host_code"]
    assert refused(doc).startswith(f"institutions.{internet['code']}.host_code:")


# ---- a key given twice: the later record would silently replace the earlier --


def _section(doc: dict[str, Any], path: str) -> list[dict[str, Any]]:
    for part in path.split("."):
        doc = doc[part]
    return doc  # type: ignore[return-value]


@pytest.mark.parametrize(("path", "first", "key", "what"), [
    ("persons", 1, "psn_no", "psn_no"),
    ("regions", 2, "admdvs", "region"),  # a region is also its handling agency's book
    ("institutions", 3, "code", "institution"),
    ("catalogue.national", 5, "code", "item"),
    ("catalogue.provinces.13", 0, "code", "item"),
])
def test_a_key_given_twice_is_refused_with_both_paths(doc, path: str, first: int, key: str, what: str) -> None:
    records = _section(doc, path)
    again = copy.deepcopy(records[first])
    again["name"] = "a later record that would replace the first"
    records.append(again)
    message = refused(doc)
    assert message.startswith(f"{path}[{len(records) - 1}].{key}: {what} {again[key]}")
    assert message.endswith(f"appears twice (first at {path}[{first}].{key})")


def test_a_second_policy_for_the_same_region_and_insurance_type_is_refused(doc) -> None:
    again = copy.deepcopy(doc["policies"][2])
    again["deductible_fen"] = 0
    doc["policies"].append(again)
    message = refused(doc)
    assert message.startswith(f"policies[{len(doc['policies']) - 1}]: the policy of region {again['admdvs']}")
    assert message.endswith("appears twice (first at policies[2])")


def test_the_same_item_code_in_another_catalogue_is_not_a_duplicate(doc) -> None:
    override = doc["catalogue"]["provinces"]["13"][0]
    assert override["code"] in {item["code"] for item in doc["catalogue"]["national"]}  # a province override
    doc["catalogue"]["provinces"]["44"] = [copy.deepcopy(override)]
    data, _ = parse_document(doc)
    assert override["code"] in data.province_catalogue["13"] and override["code"] in data.province_catalogue["44"]


def test_a_json_key_given_twice_in_a_users_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reference.json"
    path.write_text('{"format": "medsettle-reference/1", "catalogue": {"provinces": {"13": [], "13": []}}}', "utf-8")
    with pytest.raises(ReferenceDataError, match="key '13' appears twice in one object"):
        read_document(path)


def test_missing_section(doc) -> None:
    del doc["policies"]
    assert refused(doc).endswith("policies: missing")


# ---- every required field, and any malformed value -------------------------

INTERNET_SECTIONS = {"internet_defaults", "internet_provinces", "internet_policies", "internet_agreements", "host_quotas",
                     "audit_rules"}
OPTIONAL_KEYS = INTERNET_SECTIONS | {"agency_name", "host_code", "selfpay_prop_bp", "price_cap_fen", "item_kind",
                                     "rx_only", "acct_allowed", "persons", "provinces"}


def dict_paths(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from dict_paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from dict_paths(value, path + (i,))


def dotted(path: tuple) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text.lstrip(".")


def record_keys() -> list[tuple[tuple, str]]:
    """Every key of every record of the sample (ratio tables and province maps are data, not records)."""
    out = []
    for path, node in dict_paths(sample_document()):
        if "ratios_bp" in path or path[-1:] == ("provinces",):
            continue
        if path[:1] and path[0] in INTERNET_SECTIONS:  # optional sections: tests/unit/test_internet_reference.py
            continue
        out.extend((path, key) for key in node)
    return out


@pytest.mark.parametrize(("path", "key"), record_keys(), ids=lambda v: dotted(v) if isinstance(v, tuple) else v)
def test_removing_any_field(path: tuple, key: str) -> None:
    doc = sample_document()
    node = doc
    for step in path:
        node = node[step]
    node.pop(key)
    if key == "host_code":
        assert refused(doc) == f"institutions.{node['code']}.host_code: needs a physical hospital"
    elif key == "format":
        assert refused(doc).startswith("format:")
    elif key in OPTIONAL_KEYS:
        data, _ = parse_document(doc)  # an optional field: the document still loads
        if key == "provinces":
            assert data.province_catalogue == {}
            assert data.item("13", "XB0201").selfpay_prop_bp == 500  # the national entry applies
        elif path[:1] == ("catalogue",):
            items = data.catalogue if path[1] == "national" else data.province_catalogue[path[2]]
            item = items[node["code"]]
            # the defaults: no first self-pay, no price cap, a drug, sold without a prescription
            default = {"selfpay_prop_bp": 0, "price_cap_fen": None, "item_kind": "drug", "rx_only": False}[key]
            assert getattr(item, key) == default
    else:
        where = dotted(path)
        if where:
            assert refused(doc) == f"{where}.{key}: missing"
        else:  # a top-level section
            assert refused(doc).endswith(f"{key}: missing")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**15), 10**15), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=6,
)


def all_paths(node: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from all_paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from all_paths(value, path + (i,))


SAMPLE_PATHS = [p for p in all_paths(sample_document()) if p]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLE_PATHS), json_values)
def test_any_malformed_value_is_refused_cleanly(path: tuple, value: Any) -> None:
    """Whatever a user's file holds at any place, the loader either loads it or
    raises ReferenceDataError (which the CLI shows as a clean message), never
    another exception."""
    doc = copy.deepcopy(sample_document())
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    try:
        parse_document(doc)
    except ReferenceDataError as error:
        assert ":" in str(error)  # "<path>: <what is wrong>"
