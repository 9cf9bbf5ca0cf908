"""Where settlements are kept: the journal on SQLite and the group-commit writer."""
