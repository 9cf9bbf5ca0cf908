"""medsettle: real-time medical-insurance settlement with a cross-region clearing ledger.

The import package is assembled from the repository's top-level folders:
``medsettle.ledger`` (ledger/), ``medsettle.server`` (server/),
``medsettle.client`` (client/) and the generated ``medsettle.v1`` (protos/).
"""

__version__ = "0.1.0"

from medsettle import compiled as _compiled

_compiled.install_finder()
