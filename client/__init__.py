"""Python client of the settlement service, for HIS integrators and the CLI."""

from medsettle.client.settlement_client import CallRefused, SettlementClient, make_msgid

__all__ = ["CallRefused", "SettlementClient", "make_msgid"]
