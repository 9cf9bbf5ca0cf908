"""Bills, splits and settlement records: the domain's values."""

from __future__ import annotations

import datetime as dt
import enum
import operator
from dataclasses import MISSING, dataclass, field, fields
from types import FunctionType
from typing import Any, TypeVar

from medsettle.ledger.reference.models import Category

try:
    import cython
except ImportError:  # Cython only builds the compiled core: interpreted runs need none
    COMPILED = False
else:
    COMPILED = cython.compiled

if COMPILED:
    # Stores through the slot's descriptor without a Python-level call: the
    # __init__ of the values built per settlement (below) when this module is compiled.
    from cython.cimports.cpython.object import PyObject_GenericSetAttr as _store


_Frozen = TypeVar("_Frozen")


def quick_value(cls: type[_Frozen]) -> type[_Frozen]:
    """Gives a frozen, slotted dataclass an __init__ that stores each field
    through its slot's descriptor, about half the cost of the generated one
    (object.__setattr__ by name), and a __reduce__ that pickles it as its
    constructor and field values (the dataclass default goes through
    Python-level state functions: ~5x slower; the writer process sends every
    command and outcome through pickle). Same parameters, defaults and
    result. For the values built once or more per settlement. An __init__
    the class body defines (compiled, storing through PyObject_GenericSetAttr:
    faster still) is kept, with the generated one's annotations."""
    params, body, env = [], [], {}  # type: ignore[var-annotated]
    names = []
    annotations: dict[str, Any] = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    annotations["return"] = None
    for f in fields(cls):  # type: ignore[arg-type]
        assert f.init and f.default_factory is MISSING, f"{cls.__name__}.{f.name}"
        names.append(f.name)
        env[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    if isinstance(cls.__dict__["__init__"], FunctionType):  # the dataclass's own
        namespace: dict[str, Any] = {}
        exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body), env, namespace)
        init = namespace["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = init  # type: ignore[misc]
    cls.__init__.__annotations__ = annotations  # type: ignore[misc]
    field_values = operator.attrgetter(*names) if len(names) > 1 else (lambda self: (getattr(self, names[0]),))

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, field_values(self)

    __reduce__.__qualname__ = f"{cls.__qualname__}.__reduce__"
    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


class VisitType(enum.IntEnum):
    OUTPATIENT = 1
    INPATIENT = 2
    PHARMACY = 3
    INTERNET_FOLLOWUP = 4


class ClrType(enum.IntEnum):
    OUTPATIENT = 11
    INPATIENT = 21
    PHARMACY = 41


class PayLoc(enum.IntEnum):
    LOCAL = 2
    IN_PROVINCE = 3
    CROSS_PROVINCE = 4


class SettlementKind(enum.IntEnum):
    SETTLE = 1
    REVERSAL = 2


CLR_TYPE_OF_VISIT = {
    VisitType.OUTPATIENT: ClrType.OUTPATIENT,
    VisitType.INPATIENT: ClrType.INPATIENT,
    VisitType.PHARMACY: ClrType.PHARMACY,
    VisitType.INTERNET_FOLLOWUP: ClrType.OUTPATIENT,
}


def pay_loc_of(insuplc_admdvs: str, mdtrtarea_admvs: str) -> PayLoc:
    if insuplc_admdvs == mdtrtarea_admvs:
        return PayLoc.LOCAL
    if insuplc_admdvs[:2] == mdtrtarea_admvs[:2]:
        return PayLoc.IN_PROVINCE
    return PayLoc.CROSS_PROVINCE


@quick_value
@dataclass(frozen=True, slots=True)
class FeeLine:
    feedetl_sn: str
    hilist_code: str
    cnt: int
    pric_fen: int

    if COMPILED:
        def __init__(self, feedetl_sn, hilist_code, cnt, pric_fen):  # type: ignore[no-untyped-def]
            _store(self, "feedetl_sn", feedetl_sn)
            _store(self, "hilist_code", hilist_code)
            _store(self, "cnt", cnt)
            _store(self, "pric_fen", pric_fen)


@dataclass(frozen=True, slots=True)
class Prescription:
    """An e-prescription issued at a visit; the person and the issuing
    institution are the bill's."""

    rx_id: str
    prescriber_id: str
    items: tuple[tuple[str, int], ...]  # (hilist_code, cnt), each code once
    valid_days: int = 0  # 0: the region's default

    def fingerprint(self) -> str:
        items = "\x1f".join(f"{code}:{cnt}" for code, cnt in self.items)
        return f"rx\x1f{self.rx_id}\x1f{self.prescriber_id}\x1f{self.valid_days}\x1f{items}"


@quick_value
@dataclass(frozen=True, slots=True)
class Bill:
    """A validated request to split (and maybe settle) one bill."""

    msgid: str
    fixmedins_code: str
    psn_no: str
    insutype: int
    insuplc_admdvs: str
    visit_type: VisitType
    fee_lines: tuple[FeeLine, ...]
    acct_used_flag: bool = False
    diag_code: str = ""
    prior_offline_diag_date: str = ""
    rx_id: str = ""
    prescribing_fixmedins_code: str = ""
    delivery_fee_fen: int = 0
    # The e-insurance certificate as sent: verified and dropped by the service
    # (never logged, never stored), which fills psn_no and the nonce from it.
    ecert_token: str = field(default="", repr=False)
    ecert_nonce: str = ""
    ecert_expires_us: int = 0
    prescription: Prescription | None = None  # issued at this visit
    pharmacist_id: str = ""  # a pharmacy sale: who checked the prescription

    if COMPILED:
        def __init__(self, msgid, fixmedins_code, psn_no, insutype, insuplc_admdvs, visit_type,  # type: ignore[no-untyped-def]
                     fee_lines, acct_used_flag=False, diag_code="", prior_offline_diag_date="", rx_id="",
                     prescribing_fixmedins_code="", delivery_fee_fen=0, ecert_token="", ecert_nonce="",
                     ecert_expires_us=0, prescription=None, pharmacist_id=""):
            _store(self, "msgid", msgid)
            _store(self, "fixmedins_code", fixmedins_code)
            _store(self, "psn_no", psn_no)
            _store(self, "insutype", insutype)
            _store(self, "insuplc_admdvs", insuplc_admdvs)
            _store(self, "visit_type", visit_type)
            _store(self, "fee_lines", fee_lines)
            _store(self, "acct_used_flag", acct_used_flag)
            _store(self, "diag_code", diag_code)
            _store(self, "prior_offline_diag_date", prior_offline_diag_date)
            _store(self, "rx_id", rx_id)
            _store(self, "prescribing_fixmedins_code", prescribing_fixmedins_code)
            _store(self, "delivery_fee_fen", delivery_fee_fen)
            _store(self, "ecert_token", ecert_token)
            _store(self, "ecert_nonce", ecert_nonce)
            _store(self, "ecert_expires_us", ecert_expires_us)
            _store(self, "prescription", prescription)
            _store(self, "pharmacist_id", pharmacist_id)

    def fingerprint(self) -> str:
        """A canonical text of the payload, compared on idempotent retries:
        the fields in a fixed order, separated by \\x1e, each fee line's
        four by \\x1f, then the optional parts (stored digests of it must
        keep matching: the text never changes). Built in one f-string: once
        per settlement."""
        text = (
            f"{self.msgid}\x1e{self.fixmedins_code}\x1e{self.psn_no}\x1e{self.insutype!s}\x1e"
            f"{self.insuplc_admdvs}\x1e{int(self.visit_type)!s}\x1e{int(self.acct_used_flag)!s}\x1e"
            f"{self.diag_code}\x1e{self.prior_offline_diag_date}\x1e{self.rx_id}\x1e"
            f"{self.prescribing_fixmedins_code}\x1e{self.delivery_fee_fen!s}"
        ) + "".join([
            f"\x1e{line.feedetl_sn}\x1f{line.hilist_code}\x1f{line.cnt}\x1f{line.pric_fen}" for line in self.fee_lines
        ])
        if self.ecert_nonce:  # a retry shows the same certificate
            text += f"\x1eecert\x1f{self.ecert_nonce}"
        if self.prescription is not None:
            text += "\x1e" + self.prescription.fingerprint()
        if self.pharmacist_id:
            text += f"\x1epharmacist\x1f{self.pharmacist_id}"
        return text


@quick_value
@dataclass(frozen=True, slots=True)
class PersonState:
    """A person as the split needs them; replaced, never mutated (built once
    per settlement). The storage port's (ledger/storage/port.py)."""

    psn_no: str
    insutype: int
    insuplc_admdvs: str
    acct_balc_fen: int
    years: dict[int, tuple[int, int]]  # year -> (dedc_used, fund_paid)

    if COMPILED:
        def __init__(self, psn_no, insutype, insuplc_admdvs, acct_balc_fen, years):  # type: ignore[no-untyped-def]
            _store(self, "psn_no", psn_no)
            _store(self, "insutype", insutype)
            _store(self, "insuplc_admdvs", insuplc_admdvs)
            _store(self, "acct_balc_fen", acct_balc_fen)
            _store(self, "years", years)


@dataclass(slots=True)
class Accumulators:
    """A person's state the split depends on: year-to-date use and the account."""

    dedc_used_fen: int = 0  # deductible consumed this year
    fund_paid_fen: int = 0  # pooled fund paid this year (against the annual cap)
    acct_balc_fen: int = 0  # personal-account balance

    if COMPILED:  # two per settlement: not the generated __init__'s interpreted frame
        def __init__(self, dedc_used_fen=0, fund_paid_fen=0, acct_balc_fen=0):  # type: ignore[no-untyped-def]
            _store(self, "dedc_used_fen", dedc_used_fen)
            _store(self, "fund_paid_fen", fund_paid_fen)
            _store(self, "acct_balc_fen", acct_balc_fen)

    def copy(self) -> Accumulators:
        return Accumulators(self.dedc_used_fen, self.fund_paid_fen, self.acct_balc_fen)


@quick_value
@dataclass(frozen=True, slots=True)
class LineSplit:
    feedetl_sn: str
    category: Category
    det_item_fee_sumamt_fen: int
    fulamt_ownpay_amt_fen: int
    overlmt_selfpay_fen: int
    preselfpay_amt_fen: int
    inscp_scp_amt_fen: int

    if COMPILED:
        def __init__(self, feedetl_sn, category, det_item_fee_sumamt_fen, fulamt_ownpay_amt_fen,  # type: ignore[no-untyped-def]
                     overlmt_selfpay_fen, preselfpay_amt_fen, inscp_scp_amt_fen):
            _store(self, "feedetl_sn", feedetl_sn)
            _store(self, "category", category)
            _store(self, "det_item_fee_sumamt_fen", det_item_fee_sumamt_fen)
            _store(self, "fulamt_ownpay_amt_fen", fulamt_ownpay_amt_fen)
            _store(self, "overlmt_selfpay_fen", overlmt_selfpay_fen)
            _store(self, "preselfpay_amt_fen", preselfpay_amt_fen)
            _store(self, "inscp_scp_amt_fen", inscp_scp_amt_fen)

    def negated(self) -> LineSplit:
        return LineSplit(
            self.feedetl_sn, self.category, -self.det_item_fee_sumamt_fen,
            -self.fulamt_ownpay_amt_fen, -self.overlmt_selfpay_fen,
            -self.preselfpay_amt_fen, -self.inscp_scp_amt_fen,
        )


# the amounts of a Split, in the order they are stored and reported
AMOUNT_FIELDS = (
    "medfee_sumamt_fen",
    "fulamt_ownpay_amt_fen",
    "overlmt_selfpay_fen",
    "preselfpay_amt_fen",
    "inscp_scp_amt_fen",
    "act_pay_dedc_fen",
    "hifp_pay_fen",
    "fund_pay_sumamt_fen",
    "psn_part_amt_fen",
    "hosp_part_amt_fen",
    "acct_pay_fen",
    "psn_cash_pay_fen",
)


_amounts_of = operator.attrgetter(*AMOUNT_FIELDS)  # a tuple, in AMOUNT_FIELDS order


@quick_value
@dataclass(frozen=True, slots=True)
class Split:
    """Every amount of a bill's split, in fen."""

    medfee_sumamt_fen: int
    fulamt_ownpay_amt_fen: int
    overlmt_selfpay_fen: int
    preselfpay_amt_fen: int
    inscp_scp_amt_fen: int
    act_pay_dedc_fen: int
    hifp_pay_fen: int
    fund_pay_sumamt_fen: int
    psn_part_amt_fen: int
    hosp_part_amt_fen: int
    acct_pay_fen: int
    psn_cash_pay_fen: int
    balc_fen: int  # personal-account balance after
    line_splits: tuple[LineSplit, ...] = ()

    if COMPILED:
        def __init__(self, medfee_sumamt_fen, fulamt_ownpay_amt_fen, overlmt_selfpay_fen,  # type: ignore[no-untyped-def]
                     preselfpay_amt_fen, inscp_scp_amt_fen, act_pay_dedc_fen, hifp_pay_fen, fund_pay_sumamt_fen,
                     psn_part_amt_fen, hosp_part_amt_fen, acct_pay_fen, psn_cash_pay_fen, balc_fen, line_splits=()):
            _store(self, "medfee_sumamt_fen", medfee_sumamt_fen)
            _store(self, "fulamt_ownpay_amt_fen", fulamt_ownpay_amt_fen)
            _store(self, "overlmt_selfpay_fen", overlmt_selfpay_fen)
            _store(self, "preselfpay_amt_fen", preselfpay_amt_fen)
            _store(self, "inscp_scp_amt_fen", inscp_scp_amt_fen)
            _store(self, "act_pay_dedc_fen", act_pay_dedc_fen)
            _store(self, "hifp_pay_fen", hifp_pay_fen)
            _store(self, "fund_pay_sumamt_fen", fund_pay_sumamt_fen)
            _store(self, "psn_part_amt_fen", psn_part_amt_fen)
            _store(self, "hosp_part_amt_fen", hosp_part_amt_fen)
            _store(self, "acct_pay_fen", acct_pay_fen)
            _store(self, "psn_cash_pay_fen", psn_cash_pay_fen)
            _store(self, "balc_fen", balc_fen)
            _store(self, "line_splits", line_splits)

    def amounts(self) -> tuple[int, ...]:
        return _amounts_of(self)

    def negated(self, balc_fen: int) -> Split:
        values = {name: -getattr(self, name) for name in AMOUNT_FIELDS}
        return Split(
            **values,
            balc_fen=balc_fen,
            line_splits=tuple(line.negated() for line in self.line_splits),
        )

    def identity_errors(self) -> list[str]:
        """The DOMAIN.md identities this split breaks (empty when it is sound)."""
        errors = []
        if self.medfee_sumamt_fen != (
            self.fulamt_ownpay_amt_fen + self.overlmt_selfpay_fen
            + self.preselfpay_amt_fen + self.inscp_scp_amt_fen
        ):
            errors.append("medfee_sumamt != fulamt_ownpay + overlmt_selfpay + preselfpay + inscp_scp")
        if self.medfee_sumamt_fen != (
            self.fund_pay_sumamt_fen + self.psn_part_amt_fen + self.hosp_part_amt_fen
        ):
            errors.append("medfee_sumamt != fund_pay_sumamt + psn_part + hosp_part")
        if self.psn_part_amt_fen != self.acct_pay_fen + self.psn_cash_pay_fen:
            errors.append("psn_part != acct_pay + psn_cash_pay")
        return errors


@quick_value
@dataclass(frozen=True, slots=True)
class Settlement:
    """A recorded settlement or reversal: what the ledger keeps and answers with."""

    setl_id: str
    msgid: str
    fixmedins_code: str
    psn_no: str
    insutype: int
    insuplc_admdvs: str
    mdtrtarea_admvs: str
    clr_type: ClrType
    pay_loc: PayLoc
    kind: SettlementKind
    orig_setl_id: str
    setl_time: dt.datetime
    setlym: str
    split: Split
    audit_flags: tuple[str, ...] = field(default=())
    # the institution the fund part is payable to: fixmedins_code, or an
    # internet hospital's host when its agreement says so ("": not recorded)
    payee_code: str = ""

    if COMPILED:
        def __init__(self, setl_id, msgid, fixmedins_code, psn_no, insutype, insuplc_admdvs,  # type: ignore[no-untyped-def]
                     mdtrtarea_admvs, clr_type, pay_loc, kind, orig_setl_id, setl_time, setlym, split,
                     audit_flags=(), payee_code=""):
            _store(self, "setl_id", setl_id)
            _store(self, "msgid", msgid)
            _store(self, "fixmedins_code", fixmedins_code)
            _store(self, "psn_no", psn_no)
            _store(self, "insutype", insutype)
            _store(self, "insuplc_admdvs", insuplc_admdvs)
            _store(self, "mdtrtarea_admvs", mdtrtarea_admvs)
            _store(self, "clr_type", clr_type)
            _store(self, "pay_loc", pay_loc)
            _store(self, "kind", kind)
            _store(self, "orig_setl_id", orig_setl_id)
            _store(self, "setl_time", setl_time)
            _store(self, "setlym", setlym)
            _store(self, "split", split)
            _store(self, "audit_flags", audit_flags)
            _store(self, "payee_code", payee_code)

    def with_id(self, setl_id: str) -> Settlement:
        # positional, not dataclasses.replace: this runs once per settlement
        return Settlement(
            setl_id, self.msgid, self.fixmedins_code, self.psn_no, self.insutype, self.insuplc_admdvs,
            self.mdtrtarea_admvs, self.clr_type, self.pay_loc, self.kind, self.orig_setl_id, self.setl_time,
            self.setlym, self.split, self.audit_flags, self.payee_code,
        )


def split_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Split) if f.name != "line_splits")
