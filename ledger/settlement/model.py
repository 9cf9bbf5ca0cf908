"""Bills, splits and settlement records: the domain's values."""

from __future__ import annotations

import datetime as dt
import enum
import operator
from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from types import FunctionType
from typing import Any, TypeVar

from medsettle.ledger.reference.models import Category

try:
    import cython
except ImportError:  # Cython only builds the compiled core: interpreted runs need none
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]


_Frozen = TypeVar("_Frozen")


def quick_value(cls: type[_Frozen]) -> type[_Frozen]:
    """Gives a frozen, slotted dataclass an __init__ that stores each field
    through its slot's descriptor, about half the cost of the generated one
    (object.__setattr__ by name), and a __reduce__ that pickles it as its
    constructor and field values (the dataclass default goes through
    Python-level state functions: ~5x slower; the writer process sends every
    command and outcome through pickle). Same parameters, defaults and
    result. For the values built once or more per settlement. An __init__
    or __reduce__ the class body defines is kept."""
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
    if "__reduce__" in cls.__dict__:
        return cls
    field_values = operator.attrgetter(*names) if len(names) > 1 else (lambda self: (getattr(self, names[0]),))

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, field_values(self)

    __reduce__.__qualname__ = f"{cls.__qualname__}.__reduce__"
    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


def _slotted(cls: type[_Frozen]) -> type[_Frozen]:
    """The dataclass with a slot per field and no __dict__, as
    dataclass(slots=True) makes it (cython.dataclasses.dataclass takes no
    slots: interpreted, it is the standard library's dataclass)."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    body = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
    body["__slots__"] = names
    return type(cls)(cls.__name__, cls.__bases__, body)  # type: ignore[return-value]


@cython.cclass
class _FrozenValue:
    """The base of the frozen values: compiled, refuses a change as a frozen
    dataclass does (interpreted, dataclass(frozen=True) makes these methods
    in each class, and their fields' slots)."""

    if cython.compiled:
        def __setattr__(self, name: str, value: Any) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
    else:
        __slots__ = ()


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


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class FeeLine(_FrozenValue):
    feedetl_sn: str
    hilist_code: str
    cnt: int
    pric_fen: int

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return FeeLine, (self.feedetl_sn, self.hilist_code, self.cnt, self.pric_fen)


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


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class Bill(_FrozenValue):
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
    ecert_token: str = cython.dataclasses.field(default="", repr=False)
    ecert_nonce: str = ""
    ecert_expires_us: int = 0
    prescription: Prescription | None = None  # issued at this visit
    pharmacist_id: str = ""  # a pharmacy sale: who checked the prescription

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return Bill, (
            self.msgid, self.fixmedins_code, self.psn_no, self.insutype, self.insuplc_admdvs, self.visit_type,
            self.fee_lines, self.acct_used_flag, self.diag_code, self.prior_offline_diag_date, self.rx_id,
            self.prescribing_fixmedins_code, self.delivery_fee_fen, self.ecert_token, self.ecert_nonce,
            self.ecert_expires_us, self.prescription, self.pharmacist_id,
        )

    @cython.locals(line=FeeLine)
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
        )
        for line in self.fee_lines:
            text += f"\x1e{line.feedetl_sn}\x1f{line.hilist_code}\x1f{line.cnt}\x1f{line.pric_fen}"
        if self.ecert_nonce:  # a retry shows the same certificate
            text += f"\x1eecert\x1f{self.ecert_nonce}"
        if self.prescription is not None:
            text += "\x1e" + self.prescription.fingerprint()
        if self.pharmacist_id:
            text += f"\x1epharmacist\x1f{self.pharmacist_id}"
        return text


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class PersonState(_FrozenValue):
    """A person as the split needs them; replaced, never mutated (built once
    per settlement). The storage port's (ledger/storage/port.py)."""

    psn_no: str
    insutype: int
    insuplc_admdvs: str
    acct_balc_fen: int
    years: dict[int, tuple[int, int]]  # year -> (dedc_used, fund_paid)

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return PersonState, (self.psn_no, self.insutype, self.insuplc_admdvs, self.acct_balc_fen, self.years)


@cython.dataclasses.dataclass
@cython.cclass
class Accumulators:
    """A person's state the split depends on: year-to-date use and the account."""

    dedc_used_fen: int = 0  # deductible consumed this year
    fund_paid_fen: int = 0  # pooled fund paid this year (against the annual cap)
    acct_balc_fen: int = 0  # personal-account balance

    def copy(self) -> Accumulators:
        return Accumulators(self.dedc_used_fen, self.fund_paid_fen, self.acct_balc_fen)


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class LineSplit(_FrozenValue):
    feedetl_sn: str
    category: Category
    det_item_fee_sumamt_fen: int
    fulamt_ownpay_amt_fen: int
    overlmt_selfpay_fen: int
    preselfpay_amt_fen: int
    inscp_scp_amt_fen: int

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return LineSplit, (
            self.feedetl_sn, self.category, self.det_item_fee_sumamt_fen, self.fulamt_ownpay_amt_fen,
            self.overlmt_selfpay_fen, self.preselfpay_amt_fen, self.inscp_scp_amt_fen,
        )

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


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class Split(_FrozenValue):
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

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return Split, (
            self.medfee_sumamt_fen, self.fulamt_ownpay_amt_fen, self.overlmt_selfpay_fen,
            self.preselfpay_amt_fen, self.inscp_scp_amt_fen, self.act_pay_dedc_fen, self.hifp_pay_fen,
            self.fund_pay_sumamt_fen, self.psn_part_amt_fen, self.hosp_part_amt_fen, self.acct_pay_fen,
            self.psn_cash_pay_fen, self.balc_fen, self.line_splits,
        )

    def amounts(self) -> tuple[int, ...]:
        """The amounts in AMOUNT_FIELDS order (read from the struct: not an attrgetter by name)."""
        return (
            self.medfee_sumamt_fen, self.fulamt_ownpay_amt_fen, self.overlmt_selfpay_fen, self.preselfpay_amt_fen,
            self.inscp_scp_amt_fen, self.act_pay_dedc_fen, self.hifp_pay_fen, self.fund_pay_sumamt_fen,
            self.psn_part_amt_fen, self.hosp_part_amt_fen, self.acct_pay_fen, self.psn_cash_pay_fen,
        )

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


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class Settlement(_FrozenValue):
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
    audit_flags: tuple[str, ...] = ()
    # the institution the fund part is payable to: fixmedins_code, or an
    # internet hospital's host when its agreement says so ("": not recorded)
    payee_code: str = ""

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return Settlement, (
            self.setl_id, self.msgid, self.fixmedins_code, self.psn_no, self.insutype, self.insuplc_admdvs,
            self.mdtrtarea_admvs, self.clr_type, self.pay_loc, self.kind, self.orig_setl_id, self.setl_time,
            self.setlym, self.split, self.audit_flags, self.payee_code,
        )

    def with_id(self, setl_id: str) -> Settlement:
        # positional, not dataclasses.replace: this runs once per settlement
        return Settlement(
            setl_id, self.msgid, self.fixmedins_code, self.psn_no, self.insutype, self.insuplc_admdvs,
            self.mdtrtarea_admvs, self.clr_type, self.pay_loc, self.kind, self.orig_setl_id, self.setl_time,
            self.setlym, self.split, self.audit_flags, self.payee_code,
        )


def interpreted_value(cls: type[_Frozen]) -> type[_Frozen]:
    """Interpreted, a frozen value class made by cython.dataclasses.dataclass
    as dataclass(frozen=True, slots=True) and quick_value make it; compiled,
    it is an extension type with a C struct member per field (its .pxd)."""
    return quick_value(_slotted(cls))


if not cython.compiled:
    FeeLine = interpreted_value(FeeLine)  # type: ignore[misc]
    Bill = interpreted_value(Bill)  # type: ignore[misc]
    PersonState = interpreted_value(PersonState)  # type: ignore[misc]
    Accumulators = _slotted(Accumulators)  # type: ignore[misc]
    LineSplit = interpreted_value(LineSplit)  # type: ignore[misc]
    Split = interpreted_value(Split)  # type: ignore[misc]
    Settlement = interpreted_value(Settlement)  # type: ignore[misc]


def split_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Split) if f.name != "line_splits")
