-- Clearing computed in the database, and verified checkpoints of the hash
-- chain (docs/clearing.md).

-- postings_by_period_book made covering (amount_fen added): a period's
-- balance per account is read from the index alone, in order, with no sort
-- and no table row. The name stays: step 1's CREATE INDEX IF NOT EXISTS,
-- which every writable open runs again, then finds it and adds nothing.
DROP INDEX IF EXISTS postings_by_period_book;
CREATE INDEX IF NOT EXISTS postings_by_period_book
    ON postings (setlym, book, account, amount_fen);

-- The few entries that are no settlement (clearing, prepayments): clearing
-- takes their postings out of a period's balances to compare the rest with
-- what the period's settlements post.
CREATE INDEX IF NOT EXISTS journal_entries_not_settlements
    ON journal_entries (entry_no) WHERE kind NOT IN ('settle', 'reverse');

-- Verified checkpoints of the hash chain (ledger/chain_checkpoint.py): entry
-- entry_no, whose hash was entry_hash, and every entry before it passed every
-- per-entry check at verified_us; settlements up to setl_no had their entry.
-- Each row hashes the one before it. `verify --since-checkpoint` and clearing
-- recheck only the entries after the newest row; full `verify` rechecks all.
CREATE TABLE IF NOT EXISTS chain_checkpoints (
    entry_no INTEGER PRIMARY KEY,
    entry_hash TEXT NOT NULL,
    setl_no INTEGER NOT NULL,
    verified_us INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS chain_checkpoints_append_only_u BEFORE UPDATE ON chain_checkpoints
BEGIN SELECT RAISE(ABORT, 'chain checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS chain_checkpoints_append_only_d BEFORE DELETE ON chain_checkpoints
BEGIN SELECT RAISE(ABORT, 'chain checkpoints are append-only'); END;
