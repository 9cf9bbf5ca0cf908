"""Book and account names. A book is a handling agency (its 6-digit region
code) or a provincial clearing book ("province:PP")."""

FUND_POOL = "fund:pool"
FUND_PERSONAL_ACCOUNTS = "fund:personal_accounts"


def province_book(province: str) -> str:
    assert len(province) == 2 and province.isdigit(), province
    return f"province:{province}"


def payable_institution(code: str) -> str:
    return f"payable:institution:{code}"


def receivable_agency(admdvs: str) -> str:
    return f"receivable:agency:{admdvs}"


def payable_agency(admdvs: str) -> str:
    return f"payable:agency:{admdvs}"


def clearing_province(province: str) -> str:
    return f"clearing:province:{province}"


def prepaid_agency(admdvs: str) -> str:
    return f"prepaid:agency:{admdvs}"


# Provincial clearing (ledger/clearing): the provincial book's side of each
# agency's net position, the agency's side of its prepaid fund, and the
# provincial clearing bank account that prepaid funds are paid into.
CLEARING_BANK = "fund:clearing_bank"


def clearing_agency(admdvs: str) -> str:
    return f"clearing:agency:{admdvs}"


def prepaid_province(province: str) -> str:
    return f"prepaid:province:{province}"
