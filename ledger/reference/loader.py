"""Reads a reference-data document (format "medsettle-reference/1", JSON).

The shipped sample is ``sample/reference.json``; a user's own file has the
same shape (docs/operations.md: "Reference data"). Every record is checked and a bad one
is refused with the path of the offending value.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from medsettle.ledger.money import BASIS_POINTS, MAX_AMOUNT_FEN
from medsettle.ledger.progress import NO_PROGRESS, Hooks, counted
from medsettle.ledger.reference.internet import ReferenceSectionError, parse_internet_sections
from medsettle.ledger.reference.models import (
    CatalogueItem,
    Category,
    Institution,
    InstitutionKind,
    Person,
    Policy,
    ReferenceData,
    Region,
    VisitKind,
)

FORMAT = "medsettle-reference/1"
# \Z, not $: "$" also matches before a trailing newline
ADMDVS = re.compile(r"^[0-9]{6}\Z")  # ASCII digits only: \d would accept full-width ones
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}\Z")
PSN_NO = re.compile(r"^[A-Za-z0-9]{1,30}\Z")
INSUTYPES = (310, 390)


class ReferenceDataError(ValueError):
    """A reference document that cannot be loaded; names the offending path."""


def sample_document() -> dict[str, Any]:
    text = resources.files("medsettle.ledger.reference").joinpath("sample/reference.json").read_text("utf-8")
    return json.loads(text)


def read_document(path: str | Path) -> dict[str, Any]:
    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json.loads would keep the last of two equal keys silently
        keys = [key for key, _ in pairs]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ReferenceDataError(f"{path}: key {twice[0]!r} appears twice in one object")
        return dict(pairs)

    try:
        return json.loads(Path(path).read_text("utf-8"), object_pairs_hook=unique_keys)
    except json.JSONDecodeError as error:
        raise ReferenceDataError(f"{path}: not JSON: {error}") from error


def _get(record: dict[str, Any], key: str, where: str, kind: type, default: Any = ...) -> Any:
    if not isinstance(record, dict):
        raise ReferenceDataError(f"{where}: must be an object, got {type(record).__name__}")
    if key not in record:
        if default is ...:
            raise ReferenceDataError(f"{where}.{key}: missing")
        return default
    value = record[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ReferenceDataError(f"{where}.{key}: must be an integer, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise ReferenceDataError(f"{where}.{key}: must be {kind.__name__}, got {value!r}")
    return value


def _match(value: str, pattern: re.Pattern[str], where: str) -> str:
    if not pattern.match(value):
        raise ReferenceDataError(f"{where}: {value!r} does not match {pattern.pattern}")
    return value


def _first(seen: dict[Any, str], key: Any, where: str, what: str) -> None:
    """Refuses a second record with the same key: a later one would silently
    replace the earlier."""
    if key in seen:
        raise ReferenceDataError(f"{where}: {what} appears twice (first at {seen[key]})")
    seen[key] = where


def _amount(value: int, where: str) -> int:
    if not 0 <= value <= MAX_AMOUNT_FEN:
        raise ReferenceDataError(f"{where}: {value} outside 0..{MAX_AMOUNT_FEN} fen")
    return value


def _region(record: dict[str, Any], where: str) -> Region:
    return Region(
        admdvs=_match(_get(record, "admdvs", where, str), ADMDVS, f"{where}.admdvs"),
        name=_get(record, "name", where, str),
        agency_name=_get(record, "agency_name", where, str, ""),
    )


def _institution(record: dict[str, Any], where: str, regions: dict[str, Region]) -> Institution:
    admdvs = _get(record, "admdvs", where, str)
    if admdvs not in regions:
        raise ReferenceDataError(f"{where}.admdvs: unknown region {admdvs!r}")
    kind_text = _get(record, "kind", where, str)
    try:
        kind = InstitutionKind(kind_text)
    except ValueError:
        raise ReferenceDataError(f"{where}.kind: {kind_text!r} is not one of {[k.value for k in InstitutionKind]}") from None
    level = _get(record, "level", where, int)
    if not 0 <= level <= 3:
        raise ReferenceDataError(f"{where}.level: {level} outside 0..3")
    return Institution(
        code=_match(_get(record, "code", where, str), CODE, f"{where}.code"),
        name=_get(record, "name", where, str),
        kind=kind,
        level=level,
        admdvs=admdvs,
        host_code=_get(record, "host_code", where, str, None),
    )


def _item(record: dict[str, Any], where: str) -> CatalogueItem:
    category_text = _get(record, "category", where, str)
    if category_text not in Category.__members__:
        raise ReferenceDataError(f"{where}.category: {category_text!r} is not A, B or C")
    category = Category[category_text]
    selfpay_bp = _get(record, "selfpay_prop_bp", where, int, 0)
    if not 0 <= selfpay_bp <= BASIS_POINTS or (selfpay_bp and category != Category.B):
        raise ReferenceDataError(f"{where}.selfpay_prop_bp: {selfpay_bp} (0..10000, class B only)")
    cap = _get(record, "price_cap_fen", where, int, None)
    if cap is not None and not 0 < cap <= MAX_AMOUNT_FEN:
        raise ReferenceDataError(f"{where}.price_cap_fen: {cap} must be positive")
    return CatalogueItem(
        code=_match(_get(record, "code", where, str), CODE, f"{where}.code"),
        name=_get(record, "name", where, str),
        category=category,
        selfpay_prop_bp=selfpay_bp,
        price_cap_fen=cap,
        item_kind=_get(record, "item_kind", where, str, "drug"),
        rx_only=_get(record, "rx_only", where, bool, False),
    )


def _policy(record: dict[str, Any], where: str, regions: dict[str, Region]) -> Policy:
    admdvs = _get(record, "admdvs", where, str)
    if admdvs not in regions:
        raise ReferenceDataError(f"{where}.admdvs: unknown region {admdvs!r}")
    insutype = _get(record, "insutype", where, int)
    if insutype not in INSUTYPES:
        raise ReferenceDataError(f"{where}.insutype: {insutype} is not one of {INSUTYPES}")
    ratios: dict[VisitKind, dict[int, int]] = {}
    ratios_doc = _get(record, "ratios_bp", where, dict)
    for visit_text in ratios_doc:
        try:
            visit = VisitKind(visit_text)
        except ValueError:
            raise ReferenceDataError(f"{where}.ratios_bp.{visit_text}: unknown visit kind") from None
        ratios[visit] = {}
        for level_text, bp in _get(ratios_doc, visit_text, f"{where}.ratios_bp", dict).items():
            if level_text not in ("0", "1", "2", "3"):
                raise ReferenceDataError(f"{where}.ratios_bp.{visit_text}.{level_text}: level outside 0..3")
            if not (isinstance(bp, int) and not isinstance(bp, bool) and 0 <= bp <= BASIS_POINTS):
                raise ReferenceDataError(f"{where}.ratios_bp.{visit_text}.{level_text}: {bp!r} outside 0..10000")
            ratios[visit][int(level_text)] = bp
    return Policy(
        admdvs=admdvs,
        insutype=insutype,
        deductible_fen=_amount(_get(record, "deductible_fen", where, int), f"{where}.deductible_fen"),
        annual_fund_cap_fen=_amount(_get(record, "annual_fund_cap_fen", where, int), f"{where}.annual_fund_cap_fen"),
        ratios_bp=ratios,
        acct_allowed=_get(record, "acct_allowed", where, bool, True),
    )


def _person(record: dict[str, Any], where: str, regions: dict[str, Region]) -> Person:
    insuplc = _get(record, "insuplc_admdvs", where, str)
    if insuplc not in regions:
        raise ReferenceDataError(f"{where}.insuplc_admdvs: unknown region {insuplc!r}")
    insutype = _get(record, "insutype", where, int)
    if insutype not in INSUTYPES:
        raise ReferenceDataError(f"{where}.insutype: {insutype} is not one of {INSUTYPES}")
    return Person(
        psn_no=_match(_get(record, "psn_no", where, str), PSN_NO, f"{where}.psn_no"),
        name=_get(record, "name", where, str),
        insutype=insutype,
        insuplc_admdvs=insuplc,
        acct_balc_fen=_amount(_get(record, "acct_balc_fen", where, int), f"{where}.acct_balc_fen"),
    )


def _record_count(doc: dict[str, Any]) -> int:
    """The records a document holds, for progress (before they are checked)."""
    def length(value: Any) -> int:
        return len(value) if isinstance(value, list) else 0

    catalogue = doc.get("catalogue") if isinstance(doc.get("catalogue"), dict) else {}
    provinces = catalogue.get("provinces") if isinstance(catalogue.get("provinces"), dict) else {}
    return (sum(length(doc.get(section)) for section in ("regions", "institutions", "policies", "persons"))
            + length(catalogue.get("national")) + sum(length(items) for items in provinces.values()))


def parse_document(doc: dict[str, Any], hooks: Hooks = NO_PROGRESS) -> tuple[ReferenceData, list[Person]]:
    """Builds the reference data and the persons of a document, or raises.
    hooks hear of the records to check and of those checked."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ReferenceDataError(f"format: expected {FORMAT!r}")
    hooks.start(_record_count(doc))
    data = ReferenceData()
    seen: dict[Any, str] = {}  # section and key -> where first
    for i, record in enumerate(counted(_get(doc, "regions", "", list), hooks)):
        region = _region(record, f"regions[{i}]")
        _first(seen, ("region", region.admdvs), f"regions[{i}].admdvs", f"region {region.admdvs}")
        data.regions[region.admdvs] = region
    for i, record in enumerate(counted(_get(doc, "institutions", "", list), hooks)):
        institution = _institution(record, f"institutions[{i}]", data.regions)
        _first(seen, ("institution", institution.code), f"institutions[{i}].code", f"institution {institution.code}")
        data.institutions[institution.code] = institution
    for code, institution in data.institutions.items():
        if institution.kind == InstitutionKind.INTERNET_HOSPITAL:
            host = data.institutions.get(institution.host_code or "")
            if host is None or host.kind != InstitutionKind.HOSPITAL:
                raise ReferenceDataError(f"institutions.{code}.host_code: needs a physical hospital")
    catalogue = _get(doc, "catalogue", "", dict)
    for i, record in enumerate(counted(_get(catalogue, "national", "catalogue", list), hooks)):
        item = _item(record, f"catalogue.national[{i}]")
        _first(seen, ("national item", item.code), f"catalogue.national[{i}].code", f"item {item.code}")
        data.catalogue[item.code] = item
    provinces = _get(catalogue, "provinces", "catalogue", dict, {})
    for province in provinces:
        items = data.province_catalogue.setdefault(province, {})
        for i, record in enumerate(counted(_get(provinces, province, "catalogue.provinces", list), hooks)):
            item = _item(record, f"catalogue.provinces.{province}[{i}]")
            _first(seen, ("province item", province, item.code), f"catalogue.provinces.{province}[{i}].code",
                   f"item {item.code} of province {province}")
            items[item.code] = item
    for i, record in enumerate(counted(_get(doc, "policies", "", list), hooks)):
        policy = _policy(record, f"policies[{i}]", data.regions)
        _first(seen, ("policy", policy.admdvs, policy.insutype), f"policies[{i}]",
               f"the policy of region {policy.admdvs} for insutype {policy.insutype}")
        data.policies[(policy.admdvs, policy.insutype)] = policy
    persons = []
    for i, record in enumerate(counted(_get(doc, "persons", "", list, []), hooks)):
        person = _person(record, f"persons[{i}]", data.regions)
        _first(seen, ("person", person.psn_no), f"persons[{i}].psn_no", f"psn_no {person.psn_no}")
        persons.append(person)
    items = set(data.catalogue) | {code for override in data.province_catalogue.values() for code in override}
    try:
        data.internet = parse_internet_sections(
            doc, set(data.regions), {code: i.kind.value for code, i in data.institutions.items()}, items,
            {code: i.host_code for code, i in data.institutions.items() if i.kind == InstitutionKind.INTERNET_HOSPITAL},
        )
    except ReferenceSectionError as error:
        raise ReferenceDataError(str(error)) from None
    return data, persons
