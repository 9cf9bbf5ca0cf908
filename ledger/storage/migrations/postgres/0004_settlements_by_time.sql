-- The settlements of a time range (the daily supervision export's day, by
-- setl_time_us) found by an index instead of a scan of the whole ledger.
-- Settlement times grow with the writer's clock: each batch appends at the
-- index's end (about one page a batch).
CREATE INDEX IF NOT EXISTS settlements_by_time ON settlements (setl_time_us);
