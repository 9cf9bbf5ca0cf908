"""Reference data: regions, agencies, institutions, catalogue, policies, persons."""

from medsettle.ledger.reference.models import (
    Category,
    CatalogueItem,
    Institution,
    InstitutionKind,
    Person,
    Policy,
    ReferenceData,
    Region,
)

__all__ = [
    "Category",
    "CatalogueItem",
    "Institution",
    "InstitutionKind",
    "Person",
    "Policy",
    "ReferenceData",
    "Region",
]
