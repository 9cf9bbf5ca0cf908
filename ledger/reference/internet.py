"""The "Internet+" sections of a reference document: regional internet
policy, host-hospital budget quotas, internet-hospital agreements,
fund-supervision rule configuration (layered the same way).

All optional (a document without them gets the defaults below), checked
whole, a bad value refused with its path. Policy is data: a region's
follow-up window, remote-consultation coverage or audit rules change by
loading a new document, not by changing code.

A region's internet policy is layered: `internet_defaults` (every region),
then `internet_provinces` (a province's rule, written once: Fujian's 30 %),
then `internet_policies` (one region). Each key a layer leaves out is
inherited from the layer below; a key no layer sets keeps the behaviour of a
document without it (docs/internet-rules.md lists each key).
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from medsettle.ledger.money import BASIS_POINTS, MAX_AMOUNT_FEN

MAX_WINDOW_DAYS = 3660  # ten years: a longer window is a typo
MAX_LIST = 1000  # entries of any list in these sections
DIAG_PREFIX = re.compile(r"^[A-Z][0-9A-Z.]{0,9}\Z")
DEFAULT_FOLLOWUP_WINDOW_DAYS = 180
MAX_WINDOW_MONTHS = 120
MAX_RX_VALID_DAYS = 365
PROVINCE = re.compile(r"^[0-9]{2}\Z")
HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")


class ReferenceSectionError(ValueError):
    """A bad value in one of these sections; the message names its path."""


class RemoteMode(enum.Enum):
    FEE_SHARE = "fee_share"  # the fund recognises a share of the fee schedule (Fujian: 30 %)
    RATIO = "ratio"  # the fund pays a fixed ratio of the fee (Guizhou: 70-85 % by county)


class OnQuotaReached(enum.Enum):
    WARN = "warn"  # settle, flag QUOTA_REACHED
    REFUSE = "refuse"  # refuse the settlement (RULE_REFUSED, rule QUOTA_REACHED)


class AuditAction(enum.Enum):
    FLAG = "flag"  # settle, store the flag, return it in audit_flags
    REFUSE = "refuse"  # refuse (RULE_REFUSED naming the rule); nothing written


class AuditRule(enum.Enum):
    DUP_ITEM_SAME_DAY = "DUP_ITEM_SAME_DAY"
    QTY_ABOVE_LIMIT = "QTY_ABOVE_LIMIT"
    DRUG_DIAG_MISMATCH = "DRUG_DIAG_MISMATCH"
    FOLLOWUP_WITHOUT_PRIOR_VISIT = "FOLLOWUP_WITHOUT_PRIOR_VISIT"
    VISITS_PER_DAY = "VISITS_PER_DAY"


@dataclass(frozen=True, slots=True)
class RemoteCoverage:
    """How the insurance place covers remote consultation / telemedicine lines."""

    item_kinds: frozenset[str]  # catalogue item_kind values this applies to
    mode: RemoteMode
    fee_share_bp: int = 0  # FEE_SHARE: the fund's share of the fee schedule's price
    ratio_bp: int | None = None  # RATIO: the fund's ratio for every insured region it applies to
    ratio_range_bp: tuple[int, int] = (0, BASIS_POINTS)  # RATIO: the province's allowed range
    # RATIO: by the patient's insured region (Guizhou: the designated poverty counties)
    ratio_by_region_bp: Mapping[str, int] = field(default_factory=dict)

    def fund_bp(self, insuplc_admdvs: str) -> int | None:
        """What share of a remote line's eligible amount the fund pays
        directly (outside the deductible and the outpatient ratio) for a
        person insured in insuplc_admdvs; None: the ordinary terms apply."""
        if self.mode == RemoteMode.FEE_SHARE:
            return self.fee_share_bp
        return self.ratio_by_region_bp.get(insuplc_admdvs, self.ratio_bp)


@dataclass(frozen=True, slots=True)
class RegionInternetPolicy:
    admdvs: str
    # treatment place: an internet follow-up needs an offline diagnosis within this many days
    followup_window_days: int = DEFAULT_FOLLOWUP_WINDOW_DAYS
    # treatment place: ICD-10 prefixes of the common and chronic diseases an
    # internet hospital may follow up (empty: any)
    followup_diag_prefixes: tuple[str, ...] = ()
    # insurance place: item kinds / item codes the fund does not cover in an internet follow-up
    online_excluded_item_kinds: frozenset[str] = frozenset()
    online_excluded_items: frozenset[str] = frozenset()
    # insurance place: whether the personal account may pay an internet follow-up
    online_acct_allowed: bool = True
    # insurance place: remote consultation / telemedicine coverage (None: ordinary catalogue)
    remote: RemoteCoverage | None = None
    # treatment place: the window in calendar months instead of days (Shanghai: 2), 0: days
    followup_window_months: int = 0
    # treatment place: item kinds an internet follow-up may bill (None: any)
    online_item_kinds: frozenset[str] | None = None
    # treatment place: an online settlement needs the e-insurance certificate (real-name check)
    online_ecert_required: bool = False
    # treatment place: online follow-ups only for persons insured in this region (Jiangsu)
    online_local_insured_only: bool = False
    # treatment place: an internet hospital settles only under an agreement in force
    agreement_required: bool = False
    # the pharmacy's treatment place: a sale naming an e-prescription needs a recorded one
    rx_record_required: bool = False
    # the prescriber's treatment place: validity of a recorded e-prescription
    rx_default_valid_days: int = 3
    rx_max_valid_days: int = 30
    # treatment place: the day's supervision export is due the next day by this China time ("": none)
    export_deadline: str = ""

    def followup_earliest(self, today: dt.date) -> dt.date:
        """The earliest prior offline diagnosis an online follow-up today accepts."""
        if self.followup_window_months:
            return months_before(today, self.followup_window_months)
        return today - dt.timedelta(days=self.followup_window_days)


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day of the month `months` calendar months earlier (the month's
    last day when it is shorter): 2026-10-15 -> 2026-08-15, 2026-05-31 -> 2026-03-31."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


@dataclass(frozen=True, slots=True)
class HostQuota:
    """A host hospital's annual budget quota (总额管理), shared with its internet hospitals."""

    host_code: str
    year: int
    quota_fen: int  # fund payments (hifp_pay) counted against it
    on_reach: OnQuotaReached


class AgreementStatus(enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ENDED = "ended"


class Payee(enum.Enum):
    INTERNET_HOSPITAL = "internet_hospital"  # the internet hospital is paid
    HOST = "host"  # its host physical hospital is paid


@dataclass(frozen=True, slots=True)
class Agreement:
    """An internet hospital's supplementary agreement, signed through its host
    physical hospital with the agency: what it may settle, when, who is paid."""

    agreement_no: str
    internet_code: str
    host_code: str
    visit_types: frozenset[str]  # VisitType names in lower case, e.g. "internet_followup"
    item_kinds: frozenset[str]  # catalogue item kinds in scope (empty: any)
    valid_from: str  # YYYY-MM-DD, China time, inclusive
    valid_to: str  # YYYY-MM-DD, inclusive
    status: AgreementStatus
    payee: Payee

    def payee_code(self) -> str:
        return self.host_code if self.payee == Payee.HOST else self.internet_code


@dataclass(frozen=True, slots=True)
class AuditRuleConfig:
    rule: AuditRule
    action: AuditAction
    max_cnt: int = 0  # QTY_ABOVE_LIMIT: default limit per line
    max_cnt_by_item: Mapping[str, int] = field(default_factory=dict)
    diag_prefixes_by_item: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # DRUG_DIAG_MISMATCH
    item_kinds: frozenset[str] = frozenset({"service"})  # DUP_ITEM_SAME_DAY
    max_visits: int = 0  # VISITS_PER_DAY


@dataclass(slots=True)
class InternetReference:
    default_policy: RegionInternetPolicy = field(default_factory=lambda: RegionInternetPolicy(admdvs=""))
    provinces: dict[str, RegionInternetPolicy] = field(default_factory=dict)  # by 2-digit province
    policies: dict[str, RegionInternetPolicy] = field(default_factory=dict)
    # the agreements of the reference document (operators add and suspend more: storage/agreements.py)
    agreements: tuple[Agreement, ...] = ()
    quotas: dict[tuple[str, int], HostQuota] = field(default_factory=dict)
    # audit rules in layers, as the internet policy: every treatment place,
    # then a province's (by 2-digit code), then a region's; a layer's rule
    # replaces the same rule of the layers below
    audit_default: dict[AuditRule, AuditRuleConfig] = field(default_factory=dict)
    audit_by_province: dict[str, dict[AuditRule, AuditRuleConfig]] = field(default_factory=dict)
    audit_by_region: dict[str, dict[AuditRule, AuditRuleConfig]] = field(default_factory=dict)

    def policy(self, admdvs: str) -> RegionInternetPolicy:
        """The region's policy; else its province's; else the default."""
        return self.policies.get(admdvs) or self.provinces.get(admdvs[:2]) or self.default_policy

    def audit_rules(self, admdvs: str) -> tuple[AuditRuleConfig, ...]:
        """The rules in force at a treatment place, in AuditRule order: the
        region's, else its province's, else every region's."""
        merged = dict(self.audit_default)
        merged.update(self.audit_by_province.get(admdvs[:2], {}))
        merged.update(self.audit_by_region.get(admdvs, {}))
        return tuple(merged[rule] for rule in AuditRule if rule in merged)


# ---- parsing ---------------------------------------------------------
def _fail(where: str, what: str) -> ReferenceSectionError:
    return ReferenceSectionError(f"{where}: {what}")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, f"must be a list, got {type(value).__name__}")
    if len(value) > MAX_LIST:
        raise _fail(where, f"at most {MAX_LIST} entries, got {len(value)}")
    return value


def _int(record: dict[str, Any], key: str, where: str, low: int, high: int, default: Any = ...) -> int:
    if key not in record:
        if default is ...:
            raise _fail(f"{where}.{key}", "missing")
        return default
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{where}.{key}", f"must be an integer {low}..{high}, got {value!r}")
    return value


def _str(record: dict[str, Any], key: str, where: str, default: Any = ...) -> str:
    if key not in record:
        if default is ...:
            raise _fail(f"{where}.{key}", "missing")
        return default
    value = record[key]
    if not isinstance(value, str):
        raise _fail(f"{where}.{key}", f"must be a string, got {value!r}")
    return value


def _strings(record: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    values = _list(record.get(key, []), f"{where}.{key}")
    for i, value in enumerate(values):
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            raise _fail(f"{where}.{key}[{i}]", f"{value!r} is not valid")
    return tuple(values)


def _enum(record: dict[str, Any], key: str, where: str, kind: type[enum.Enum], default: Any = ...) -> Any:
    text = _str(record, key, where, default if default is ... else default.value)
    try:
        return kind(text)
    except ValueError:
        raise _fail(f"{where}.{key}", f"{text!r} is not one of {[k.value for k in kind]}") from None


def _remote(record: dict[str, Any], where: str) -> RemoteCoverage:
    mode = _enum(record, "mode", where, RemoteMode)
    kinds = frozenset(_strings(record, "item_kinds", where)) or frozenset({"remote_consultation", "telemedicine"})
    if mode == RemoteMode.FEE_SHARE:
        return RemoteCoverage(kinds, mode, fee_share_bp=_int(record, "fee_share_bp", where, 0, BASIS_POINTS))
    bounds = _list(record.get("ratio_range_bp", [0, BASIS_POINTS]), f"{where}.ratio_range_bp")
    if len(bounds) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) \
            or not 0 <= bounds[0] <= bounds[1] <= BASIS_POINTS:
        raise _fail(f"{where}.ratio_range_bp", f"must be [low, high] within 0..{BASIS_POINTS}, got {bounds!r}")
    by_region = {
        admdvs: _int({"v": bp}, "v", f"{where}.ratio_by_region_bp.{admdvs}", bounds[0], bounds[1])
        for admdvs, bp in _obj(record.get("ratio_by_region_bp", {}), f"{where}.ratio_by_region_bp").items()
    }
    ratio = _int(record, "ratio_bp", where, bounds[0], bounds[1], None if by_region else ...)
    return RemoteCoverage(kinds, mode, ratio_bp=ratio, ratio_range_bp=(bounds[0], bounds[1]), ratio_by_region_bp=by_region)


def _kinds(record: dict[str, Any], key: str, where: str, default: Any) -> Any:
    return frozenset(_strings(record, key, where)) if key in record else default


def _region_policy(record: Any, where: str, admdvs: str, base: RegionInternetPolicy) -> RegionInternetPolicy:
    """A layer of internet policy: each key it leaves out is base's."""
    record = _obj(record, where)
    remote = record.get("remote_coverage")
    online_kinds = base.online_item_kinds
    if "online_item_kinds" in record:
        online_kinds = frozenset(_strings(record, "online_item_kinds", where))
    policy = RegionInternetPolicy(
        admdvs=admdvs,
        followup_window_days=_int(record, "followup_window_days", where, 1, MAX_WINDOW_DAYS, base.followup_window_days),
        followup_diag_prefixes=_strings(record, "followup_diag_prefixes", where, DIAG_PREFIX) or base.followup_diag_prefixes,
        online_excluded_item_kinds=_kinds(record, "online_excluded_item_kinds", where, base.online_excluded_item_kinds),
        online_excluded_items=_kinds(record, "online_excluded_items", where, base.online_excluded_items),
        online_acct_allowed=_enum_bool(record, "online_acct_allowed", where, base.online_acct_allowed),
        remote=base.remote if remote is None else _remote(_obj(remote, f"{where}.remote_coverage"), f"{where}.remote_coverage"),
        followup_window_months=_int(record, "followup_window_months", where, 0, MAX_WINDOW_MONTHS, base.followup_window_months),
        online_item_kinds=online_kinds,
        online_ecert_required=_enum_bool(record, "online_ecert_required", where, base.online_ecert_required),
        online_local_insured_only=_enum_bool(record, "online_local_insured_only", where, base.online_local_insured_only),
        agreement_required=_enum_bool(record, "agreement_required", where, base.agreement_required),
        rx_record_required=_enum_bool(record, "rx_record_required", where, base.rx_record_required),
        rx_default_valid_days=_int(record, "rx_default_valid_days", where, 1, MAX_RX_VALID_DAYS, base.rx_default_valid_days),
        rx_max_valid_days=_int(record, "rx_max_valid_days", where, 1, MAX_RX_VALID_DAYS, base.rx_max_valid_days),
        export_deadline=_str(record, "export_deadline", where, base.export_deadline),
    )
    if policy.export_deadline and not HH_MM.match(policy.export_deadline):
        raise _fail(f"{where}.export_deadline", f"must be HH:MM (China time, the next day), got {policy.export_deadline!r}")
    if policy.rx_default_valid_days > policy.rx_max_valid_days:
        raise _fail(f"{where}.rx_default_valid_days", f"above rx_max_valid_days ({policy.rx_max_valid_days})")
    return policy


def _enum_bool(record: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = record.get(key, default)
    if not isinstance(value, bool):
        raise _fail(f"{where}.{key}", f"must be true or false, got {value!r}")
    return value


def _audit_rule(record: Any, where: str, items: set[str]) -> tuple[str, str, AuditRuleConfig]:
    """(admdvs, province, the rule): at most one of the two is set."""
    record = _obj(record, where)
    rule = _enum(record, "rule", where, AuditRule)
    action = _enum(record, "action", where, AuditAction)
    admdvs = _str(record, "admdvs", where, "")
    province = _str(record, "province", where, "")
    if admdvs and province:
        raise _fail(where, "a rule is for one region (admdvs) or one province (province), not both")
    if province and not PROVINCE.match(province):
        raise _fail(f"{where}.province", f"must be a 2-digit province code, got {province!r}")
    by_item: dict[str, int] = {}
    for code, limit in _obj(record.get("max_cnt_by_item", {}), f"{where}.max_cnt_by_item").items():
        if code not in items:
            raise _fail(f"{where}.max_cnt_by_item.{code}", "not in the catalogue")
        by_item[code] = _int({"v": limit}, "v", f"{where}.max_cnt_by_item.{code}", 1, 100_000)
    diag: dict[str, tuple[str, ...]] = {}
    for code, prefixes in _obj(record.get("diag_prefixes_by_item", {}), f"{where}.diag_prefixes_by_item").items():
        if code not in items:
            raise _fail(f"{where}.diag_prefixes_by_item.{code}", "not in the catalogue")
        diag[code] = _strings({"p": prefixes}, "p", f"{where}.diag_prefixes_by_item.{code}", DIAG_PREFIX)
    config = AuditRuleConfig(
        rule=rule,
        action=action,
        max_cnt=_int(record, "max_cnt", where, 1, 100_000, 100_000),
        max_cnt_by_item=by_item,
        diag_prefixes_by_item=diag,
        item_kinds=frozenset(_strings(record, "item_kinds", where)) or frozenset({"service"}),
        max_visits=_int(record, "max_visits", where, 1, 1000, 1000),
    )
    return admdvs, province, config


VISIT_TYPE_NAMES = frozenset({"outpatient", "inpatient", "pharmacy", "internet_followup"})
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _date(record: dict[str, Any], key: str, where: str) -> str:
    text = _str(record, key, where)
    try:
        if not DATE.match(text):
            raise ValueError
        dt.date.fromisoformat(text)
    except ValueError:
        raise _fail(f"{where}.{key}", f"must be YYYY-MM-DD, got {text!r}") from None
    return text


def parse_agreement(record: Any, where: str, hosts: Mapping[str, str | None]) -> Agreement:
    """One agreement record (a reference document's, or an operator's);
    hosts: internet hospital code -> its host physical hospital."""
    record = _obj(record, where)
    internet = _str(record, "internet_code", where)
    if internet not in hosts:
        raise _fail(f"{where}.internet_code", f"{internet!r} is not an internet hospital of the reference data")
    visit_types = frozenset(_strings(record, "visit_types", where)) or frozenset({"internet_followup"})
    unknown = sorted(visit_types - VISIT_TYPE_NAMES)
    if unknown:
        raise _fail(f"{where}.visit_types", f"{unknown[0]!r} is not one of {sorted(VISIT_TYPE_NAMES)}")
    agreement = Agreement(
        agreement_no=_str(record, "agreement_no", where),
        internet_code=internet,
        host_code=hosts[internet] or "",
        visit_types=visit_types,
        item_kinds=frozenset(_strings(record, "item_kinds", where)),
        valid_from=_date(record, "valid_from", where),
        valid_to=_date(record, "valid_to", where),
        status=_enum(record, "status", where, AgreementStatus, AgreementStatus.ACTIVE),
        payee=_enum(record, "payee", where, Payee, Payee.HOST),
    )
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}\Z", agreement.agreement_no):
        raise _fail(f"{where}.agreement_no", f"{agreement.agreement_no!r} is not 1-40 letters, digits, '.', '-' or '_'")
    if agreement.valid_to < agreement.valid_from:
        raise _fail(f"{where}.valid_to", f"before valid_from ({agreement.valid_from})")
    return agreement


def parse_internet_sections(
    doc: dict[str, Any], regions: set[str], institutions: Mapping[str, str], items: set[str],
    hosts: Mapping[str, str | None] | None = None,
) -> InternetReference:
    """The optional sections `internet_defaults`, `internet_provinces`,
    `internet_policies`, `internet_agreements`, `host_quotas`, `audit_rules`.
    institutions: code -> kind value; hosts: internet hospital -> host."""
    out = InternetReference()
    defaults = doc.get("internet_defaults")
    if defaults is not None:
        out.default_policy = _region_policy(defaults, "internet_defaults", "", out.default_policy)
    for i, record in enumerate(_list(doc.get("internet_provinces", []), "internet_provinces")):
        where = f"internet_provinces[{i}]"
        province = _str(_obj(record, where), "province", where)
        if not PROVINCE.match(province):
            raise _fail(f"{where}.province", f"must be a 2-digit province code, got {province!r}")
        if province in out.provinces:
            raise _fail(f"{where}.province", f"province {province} appears twice")
        out.provinces[province] = _region_policy(record, where, province, out.default_policy)
    for i, record in enumerate(_list(doc.get("internet_policies", []), "internet_policies")):
        where = f"internet_policies[{i}]"
        admdvs = _str(_obj(record, where), "admdvs", where)
        if admdvs not in regions:
            raise _fail(f"{where}.admdvs", f"unknown region {admdvs!r}")
        if admdvs in out.policies:
            raise _fail(f"{where}.admdvs", f"region {admdvs} appears twice")
        base = out.provinces.get(admdvs[:2], out.default_policy)
        out.policies[admdvs] = _region_policy(record, where, admdvs, base)
    for where, policy in [("internet_defaults", out.default_policy), *out.provinces.items(), *out.policies.items()]:
        for admdvs in (policy.remote.ratio_by_region_bp if policy.remote else {}):
            if admdvs not in regions:
                raise _fail(f"{where}: remote_coverage.ratio_by_region_bp.{admdvs}", "unknown region")
    hosts = hosts if hosts is not None else {}
    agreements: dict[str, Agreement] = {}
    for i, record in enumerate(_list(doc.get("internet_agreements", []), "internet_agreements")):
        agreement = parse_agreement(record, f"internet_agreements[{i}]", hosts)
        if agreement.agreement_no in agreements:
            raise _fail(f"internet_agreements[{i}].agreement_no", f"{agreement.agreement_no} appears twice")
        agreements[agreement.agreement_no] = agreement
    out.agreements = tuple(agreements.values())
    for i, record in enumerate(_list(doc.get("host_quotas", []), "host_quotas")):
        where = f"host_quotas[{i}]"
        host = _str(_obj(record, where), "host_code", where)
        if institutions.get(host) != "hospital":
            raise _fail(f"{where}.host_code", f"{host!r} is not a physical hospital of the document")
        quota = HostQuota(
            host_code=host,
            year=_int(record, "year", where, 2000, 2100),
            quota_fen=_int(record, "quota_fen", where, 0, MAX_AMOUNT_FEN),
            on_reach=_enum(record, "on_reach", where, OnQuotaReached, OnQuotaReached.WARN),
        )
        if (host, quota.year) in out.quotas:
            raise _fail(where, f"a second quota for {host} in {quota.year}")
        out.quotas[(host, quota.year)] = quota
    for i, record in enumerate(_list(doc.get("audit_rules", []), "audit_rules")):
        where = f"audit_rules[{i}]"
        admdvs, province, config = _audit_rule(record, where, items)
        if admdvs and admdvs not in regions:
            raise _fail(f"{where}.admdvs", f"unknown region {admdvs!r}")
        if province and not any(region.startswith(province) for region in regions):
            raise _fail(f"{where}.province", f"no region of the document is in province {province}")
        if admdvs:
            target, scope = out.audit_by_region.setdefault(admdvs, {}), f"region {admdvs}"
        elif province:
            target, scope = out.audit_by_province.setdefault(province, {}), f"province {province}"
        else:
            target, scope = out.audit_default, "every region"
        if config.rule in target:
            raise _fail(f"{where}.rule", f"{config.rule.value} configured twice for {scope}")
        target[config.rule] = config
    return out
