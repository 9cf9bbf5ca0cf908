"""The "Internet+" sections of a reference document: regional internet
policy, host-hospital budget quotas, fund-supervision rule configuration.

All optional (a document without them gets the defaults below), checked
whole, a bad value refused with its path. Policy is data: a region's
follow-up window, remote-consultation coverage or audit rules change by
loading a new document, not by changing code.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from medsettle.ledger.money import BASIS_POINTS, MAX_AMOUNT_FEN

MAX_WINDOW_DAYS = 3660  # ten years: a longer window is a typo
MAX_LIST = 1000  # entries of any list in these sections
DIAG_PREFIX = re.compile(r"^[A-Z][0-9A-Z.]{0,9}\Z")
DEFAULT_FOLLOWUP_WINDOW_DAYS = 180


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
    fee_share_bp: int = 0  # FEE_SHARE: recognised share of the fee schedule
    ratio_bp: int = 0  # RATIO: the fund's ratio for a remote bill
    ratio_range_bp: tuple[int, int] = (0, BASIS_POINTS)  # RATIO: the province's allowed range


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


@dataclass(frozen=True, slots=True)
class HostQuota:
    """A host hospital's annual budget quota (总额管理), shared with its internet hospitals."""

    host_code: str
    year: int
    quota_fen: int  # fund payments (hifp_pay) counted against it
    on_reach: OnQuotaReached


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
    policies: dict[str, RegionInternetPolicy] = field(default_factory=dict)
    quotas: dict[tuple[str, int], HostQuota] = field(default_factory=dict)
    # rules for every treatment place, and per-region overrides (same rule replaced)
    audit_default: dict[AuditRule, AuditRuleConfig] = field(default_factory=dict)
    audit_by_region: dict[str, dict[AuditRule, AuditRuleConfig]] = field(default_factory=dict)

    def policy(self, admdvs: str) -> RegionInternetPolicy:
        return self.policies.get(admdvs) or self.default_policy

    def audit_rules(self, admdvs: str) -> tuple[AuditRuleConfig, ...]:
        """The rules in force at a treatment place, in AuditRule order."""
        merged = dict(self.audit_default)
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
    ratio = _int(record, "ratio_bp", where, bounds[0], bounds[1])
    return RemoteCoverage(kinds, mode, ratio_bp=ratio, ratio_range_bp=(bounds[0], bounds[1]))


def _region_policy(record: Any, where: str, admdvs: str, base: RegionInternetPolicy) -> RegionInternetPolicy:
    record = _obj(record, where)
    remote = record.get("remote_coverage")
    return RegionInternetPolicy(
        admdvs=admdvs,
        followup_window_days=_int(record, "followup_window_days", where, 1, MAX_WINDOW_DAYS, base.followup_window_days),
        followup_diag_prefixes=_strings(record, "followup_diag_prefixes", where, DIAG_PREFIX) or base.followup_diag_prefixes,
        online_excluded_item_kinds=frozenset(_strings(record, "online_excluded_item_kinds", where)),
        online_excluded_items=frozenset(_strings(record, "online_excluded_items", where)),
        online_acct_allowed=bool(_enum_bool(record, "online_acct_allowed", where, base.online_acct_allowed)),
        remote=None if remote is None else _remote(_obj(remote, f"{where}.remote_coverage"), f"{where}.remote_coverage"),
    )


def _enum_bool(record: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = record.get(key, default)
    if not isinstance(value, bool):
        raise _fail(f"{where}.{key}", f"must be true or false, got {value!r}")
    return value


def _audit_rule(record: Any, where: str, items: set[str]) -> tuple[str, AuditRuleConfig]:
    record = _obj(record, where)
    rule = _enum(record, "rule", where, AuditRule)
    action = _enum(record, "action", where, AuditAction)
    admdvs = _str(record, "admdvs", where, "")
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
    return admdvs, config


def parse_internet_sections(
    doc: dict[str, Any], regions: set[str], institutions: Mapping[str, str], items: set[str]
) -> InternetReference:
    """The optional sections `internet_policies`, `host_quotas`,
    `audit_rules`. institutions: code -> kind value."""
    out = InternetReference()
    defaults = doc.get("internet_defaults")
    if defaults is not None:
        out.default_policy = _region_policy(defaults, "internet_defaults", "", out.default_policy)
    for i, record in enumerate(_list(doc.get("internet_policies", []), "internet_policies")):
        where = f"internet_policies[{i}]"
        admdvs = _str(_obj(record, where), "admdvs", where)
        if admdvs not in regions:
            raise _fail(f"{where}.admdvs", f"unknown region {admdvs!r}")
        if admdvs in out.policies:
            raise _fail(f"{where}.admdvs", f"region {admdvs} appears twice")
        out.policies[admdvs] = _region_policy(record, where, admdvs, out.default_policy)
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
        admdvs, config = _audit_rule(record, where, items)
        if admdvs and admdvs not in regions:
            raise _fail(f"{where}.admdvs", f"unknown region {admdvs!r}")
        target = out.audit_by_region.setdefault(admdvs, {}) if admdvs else out.audit_default
        if config.rule in target:
            raise _fail(f"{where}.rule", f"{config.rule.value} configured twice for {admdvs or 'every region'}")
        target[config.rule] = config
    return out
