"""Where settlements are kept: the storage port (port.py) the use case depends on, its
SQLite backend (sqlite.py, internet_state.py), the row codec shared by every backend
(rows.py), the backend chosen by --db (backends.py) and the group-commit writer."""
