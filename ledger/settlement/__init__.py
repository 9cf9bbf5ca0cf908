"""How one bill is split between the fund, the personal account and cash."""
