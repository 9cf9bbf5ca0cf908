-- postings_by_period_book in entry order within each account: (setlym,
-- book, account, entry_no, amount_fen). Step 2's order put amount_fen right
-- after the account, so each posting went into the account's run of keys at
-- a random place: about one leaf page per posting in every batch's WAL. With
-- entry_no before it, a batch's postings append at the end of each
-- account's run (one page per account touched); the index still holds every
-- column clearing sums, so a period's balances are still read off the index
-- alone, in order. The name stays (see step 2).
DROP INDEX IF EXISTS postings_by_period_book;
CREATE INDEX IF NOT EXISTS postings_by_period_book
    ON postings (setlym, book, account, entry_no, amount_fen);
