"""Reference data as plain, immutable objects. Policy is data, per region."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping

from medsettle.ledger.money import BASIS_POINTS
from medsettle.ledger.reference.internet import InternetReference


class Category(enum.IntEnum):
    """Catalogue category of an item (chrgitm_lv)."""

    A = 1  # 甲类: fully eligible
    B = 2  # 乙类: the patient first pays selfpay_prop_bp, the rest is eligible
    C = 3  # 丙类: all self-paid


class InstitutionKind(enum.Enum):
    HOSPITAL = "hospital"
    INTERNET_HOSPITAL = "internet_hospital"
    PHARMACY = "pharmacy"


class VisitKind(enum.Enum):
    """Which ratio table of a policy applies."""

    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"
    PHARMACY = "pharmacy"


@dataclass(frozen=True, slots=True)
class Region:
    """A pooling region; its handling agency's book is named by its code."""

    admdvs: str  # 6-digit administrative division code
    name: str
    agency_name: str

    @property
    def province(self) -> str:
        return self.admdvs[:2]


@dataclass(frozen=True, slots=True)
class Institution:
    code: str  # fixmedins_code
    name: str
    kind: InstitutionKind
    level: int  # 1..3 for hospitals; 0 for pharmacies
    admdvs: str  # treatment place (mdtrtarea_admvs)
    host_code: str | None = None  # an internet hospital's host physical hospital
    # admdvs[:2], kept as a field: read several times per settlement, where a
    # property is a Python-level call (not compared, not a constructor argument)
    province: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "province", self.admdvs[:2])


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    code: str  # hilist_code
    name: str
    category: Category
    selfpay_prop_bp: int = 0  # class B first self-pay, in basis points
    price_cap_fen: int | None = None  # catalogue price cap per unit
    item_kind: str = "drug"  # drug / service / consumable / consultation / remote_consultation / telemedicine
    rx_only: bool = False  # prescription-only: a pharmacy sells it only against an e-prescription

    def __post_init__(self) -> None:
        assert 0 <= self.selfpay_prop_bp <= BASIS_POINTS
        assert self.category == Category.B or self.selfpay_prop_bp == 0
        assert self.price_cap_fen is None or self.price_cap_fen > 0


@dataclass(frozen=True, slots=True)
class Policy:
    """The insurance place's policy for one insurance type, per calendar year."""

    admdvs: str
    insutype: int  # 310 employee basic, 390 resident basic
    deductible_fen: int  # annual deductible (起付线)
    annual_fund_cap_fen: int  # annual pooled-fund cap (封顶线)
    # ratio of the pooled fund, in basis points, by visit kind then institution level
    ratios_bp: Mapping[VisitKind, Mapping[int, int]]
    acct_allowed: bool = True  # whether the personal account may pay

    def __post_init__(self) -> None:
        assert self.deductible_fen >= 0 and self.annual_fund_cap_fen >= 0
        for by_level in self.ratios_bp.values():
            assert all(0 <= bp <= BASIS_POINTS for bp in by_level.values())

    def ratio_bp(self, visit: VisitKind, level: int) -> int | None:
        return self.ratios_bp.get(visit, {}).get(level)


@dataclass(frozen=True, slots=True)
class Person:
    psn_no: str
    name: str
    insutype: int
    insuplc_admdvs: str
    acct_balc_fen: int  # opening personal-account balance


@dataclass(slots=True)
class ReferenceData:
    """Everything but persons, held in memory (persons live in the database)."""

    regions: dict[str, Region] = field(default_factory=dict)
    institutions: dict[str, Institution] = field(default_factory=dict)
    # national catalogue, and per-province overrides keyed by 2-digit province
    catalogue: dict[str, CatalogueItem] = field(default_factory=dict)
    province_catalogue: dict[str, dict[str, CatalogueItem]] = field(default_factory=dict)
    policies: dict[tuple[str, int], Policy] = field(default_factory=dict)
    # "Internet+" policy, host quotas, fund-supervision rules (reference/internet.py)
    internet: InternetReference = field(default_factory=InternetReference)

    def item(self, province: str, code: str) -> CatalogueItem | None:
        """The treatment province's catalogue entry, falling back to the national one."""
        override = self.province_catalogue.get(province)
        if override is not None and code in override:
            return override[code]
        return self.catalogue.get(code)

    def policy(self, admdvs: str, insutype: int) -> Policy | None:
        return self.policies.get((admdvs, insutype))
