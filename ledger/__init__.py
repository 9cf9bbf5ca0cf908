"""The domain and its storage. Knows nothing of gRPC.

- reference/   regions, agencies, institutions, catalogue, policies (data)
- settlement/  how one bill is split (pure functions)
- posting/     how a settlement is posted to the double-entry books (pure)
- storage/     the journal on SQLite, the group-commit writer
- clearing/    the monthly provincial clearing run: reconcile, net, pay
- service.py   the use cases the server and the CLI call
"""
