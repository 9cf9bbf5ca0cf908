-- medsettle ledger schema (SQLite). Append-only journal: settlements,
-- journal_entries and postings are never updated or deleted (triggers refuse
-- it); corrections are new entries. Balances are derived from postings.

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Each loaded reference document; the newest is in force.
CREATE TABLE IF NOT EXISTS reference_documents (
    doc_no INTEGER PRIMARY KEY,
    loaded_at TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS persons (
    psn_no TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    insutype INTEGER NOT NULL,
    insuplc_admdvs TEXT NOT NULL,
    acct_balc_fen INTEGER NOT NULL CHECK (acct_balc_fen >= 0)
);

-- Year-to-date accumulators of a person: deductible used, pooled fund paid.
CREATE TABLE IF NOT EXISTS person_years (
    psn_no TEXT NOT NULL,
    year INTEGER NOT NULL,
    dedc_used_fen INTEGER NOT NULL CHECK (dedc_used_fen >= 0),
    fund_paid_fen INTEGER NOT NULL CHECK (fund_paid_fen >= 0),
    PRIMARY KEY (psn_no, year)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS settlements (
    setl_no INTEGER PRIMARY KEY,
    setl_id TEXT NOT NULL UNIQUE,
    fixmedins_code TEXT NOT NULL,
    msgid TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    kind INTEGER NOT NULL,
    orig_setl_id TEXT NOT NULL,
    psn_no TEXT NOT NULL,
    insutype INTEGER NOT NULL,
    insuplc_admdvs TEXT NOT NULL,
    mdtrtarea_admvs TEXT NOT NULL,
    clr_type INTEGER NOT NULL,
    pay_loc INTEGER NOT NULL,
    setl_time_us INTEGER NOT NULL,
    setlym TEXT NOT NULL,
    medfee_sumamt_fen INTEGER NOT NULL,
    fulamt_ownpay_amt_fen INTEGER NOT NULL,
    overlmt_selfpay_fen INTEGER NOT NULL,
    preselfpay_amt_fen INTEGER NOT NULL,
    inscp_scp_amt_fen INTEGER NOT NULL,
    act_pay_dedc_fen INTEGER NOT NULL,
    hifp_pay_fen INTEGER NOT NULL,
    fund_pay_sumamt_fen INTEGER NOT NULL,
    psn_part_amt_fen INTEGER NOT NULL,
    hosp_part_amt_fen INTEGER NOT NULL,
    acct_pay_fen INTEGER NOT NULL,
    psn_cash_pay_fen INTEGER NOT NULL,
    balc_fen INTEGER NOT NULL,
    line_splits TEXT NOT NULL,
    audit_flags TEXT NOT NULL,
    payee_code TEXT NOT NULL,
    UNIQUE (fixmedins_code, msgid)
);
CREATE INDEX IF NOT EXISTS settlements_by_period
    ON settlements (setlym, fixmedins_code, clr_type);
-- A settlement is reversed at most once.
CREATE UNIQUE INDEX IF NOT EXISTS settlements_one_reversal
    ON settlements (orig_setl_id) WHERE kind = 2;

-- One journal entry per settlement, reversal or clearing posting; each
-- commits to the previous one (hash chain, for tamper evidence).
CREATE TABLE IF NOT EXISTS journal_entries (
    entry_no INTEGER PRIMARY KEY,
    setl_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    setlym TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_entries_by_setl ON journal_entries (setl_id);

CREATE TABLE IF NOT EXISTS postings (
    entry_no INTEGER NOT NULL,
    setlym TEXT NOT NULL,
    book TEXT NOT NULL,
    account TEXT NOT NULL,
    amount_fen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_by_period_book
    ON postings (setlym, book, account);
CREATE INDEX IF NOT EXISTS postings_by_entry ON postings (entry_no);

CREATE TRIGGER IF NOT EXISTS settlements_append_only_u BEFORE UPDATE ON settlements
BEGIN SELECT RAISE(ABORT, 'settlements are append-only'); END;
CREATE TRIGGER IF NOT EXISTS settlements_append_only_d BEFORE DELETE ON settlements
BEGIN SELECT RAISE(ABORT, 'settlements are append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_append_only_u BEFORE UPDATE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_append_only_d BEFORE DELETE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS postings_append_only_u BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;
CREATE TRIGGER IF NOT EXISTS postings_append_only_d BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'postings are append-only'); END;

-- Provincial clearing runs (ledger/clearing): one per province and period,
-- written in the same transaction as the clearing journal entry; the stored
-- statement is what a re-run prints, byte for byte.
CREATE TABLE IF NOT EXISTS clearing_runs (
    province TEXT NOT NULL,
    period TEXT NOT NULL,
    entry_no INTEGER NOT NULL,
    cleared_us INTEGER NOT NULL,
    statement_json TEXT NOT NULL,
    statement_sha256 TEXT NOT NULL,
    PRIMARY KEY (province, period)
);
CREATE TRIGGER IF NOT EXISTS clearing_runs_append_only_u BEFORE UPDATE ON clearing_runs
BEGIN SELECT RAISE(ABORT, 'clearing runs are append-only'); END;
CREATE TRIGGER IF NOT EXISTS clearing_runs_append_only_d BEFORE DELETE ON clearing_runs
BEGIN SELECT RAISE(ABORT, 'clearing runs are append-only'); END;

-- Caller credentials (server/auth.py): only the SHA-256 of each bearer token
-- is stored; a token is shown once, when issued. Revoked rows stay for audit.
CREATE TABLE IF NOT EXISTS credentials (
    cred_id INTEGER PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('institution', 'operator')),
    fixmedins_code TEXT NOT NULL,
    label TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    revoked_us INTEGER
);

-- "Internet+" and fund-supervision state (ledger/storage/internet_state.py),
-- written by the settlement writer in the same transaction as the
-- settlements it belongs to.
-- A host hospital's fund payments counted against its annual quota.
CREATE TABLE IF NOT EXISTS host_quota_use (
    host_code TEXT NOT NULL,
    year INTEGER NOT NULL,
    used_fen INTEGER NOT NULL,
    PRIMARY KEY (host_code, year)
) WITHOUT ROWID;
-- E-prescriptions filled at pharmacies; a reversed fill frees the prescription.
CREATE TABLE IF NOT EXISTS rx_fills (
    setl_id TEXT PRIMARY KEY,
    prescribing_code TEXT NOT NULL,
    rx_id TEXT NOT NULL,
    pharmacy_code TEXT NOT NULL,
    filled_us INTEGER NOT NULL,
    reversal_setl_id TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS rx_fills_once
    ON rx_fills (prescribing_code, rx_id) WHERE reversal_setl_id IS NULL;
-- E-prescriptions issued with a visit (settlements.setl_id), with their
-- contents: items as JSON [[hilist_code, cnt], ...]. A reversed visit voids
-- its prescription. Fills of a recorded prescription go to rx_fill_items
-- (rx_fills keeps the fill-once record of prescriptions never recorded).
CREATE TABLE IF NOT EXISTS prescriptions (
    prescribing_code TEXT NOT NULL,
    rx_id TEXT NOT NULL,
    setl_id TEXT NOT NULL,
    psn_no TEXT NOT NULL,
    prescriber_id TEXT NOT NULL,
    issued_day TEXT NOT NULL,
    valid_to TEXT NOT NULL,
    items TEXT NOT NULL,
    voided_setl_id TEXT,
    PRIMARY KEY (prescribing_code, rx_id)
);
CREATE INDEX IF NOT EXISTS prescriptions_by_setl ON prescriptions (setl_id);
-- What each pharmacy sale took from a recorded prescription, item by item
-- (partial fills); a reversed sale gives its quantities back.
CREATE TABLE IF NOT EXISTS rx_fill_items (
    setl_id TEXT NOT NULL,
    prescribing_code TEXT NOT NULL,
    rx_id TEXT NOT NULL,
    hilist_code TEXT NOT NULL,
    cnt INTEGER NOT NULL,
    pharmacist_id TEXT NOT NULL,
    reversal_setl_id TEXT,
    PRIMARY KEY (setl_id, hilist_code)
);
CREATE INDEX IF NOT EXISTS rx_fill_items_by_rx ON rx_fill_items (prescribing_code, rx_id);
-- Internet-hospital agreements added or changed by an operator (medsettle
-- agreements); a row replaces the reference document's agreement of the same
-- agreement_no. visit_types and item_kinds: comma-separated.
CREATE TABLE IF NOT EXISTS internet_agreements (
    agreement_no TEXT PRIMARY KEY,
    internet_code TEXT NOT NULL,
    host_code TEXT NOT NULL,
    visit_types TEXT NOT NULL,
    item_kinds TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_to TEXT NOT NULL,
    status TEXT NOT NULL,
    payee TEXT NOT NULL,
    changed_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS internet_agreements_by_hospital ON internet_agreements (internet_code);
-- E-insurance certificate nonces seen (never the token): a replay is refused.
CREATE TABLE IF NOT EXISTS ecert_nonces (
    nonce TEXT PRIMARY KEY,
    used_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
) WITHOUT ROWID;
-- Each settled visit as the audit rules see it (China-time day, diagnosis, items, e-prescription).
CREATE TABLE IF NOT EXISTS visit_log (
    setl_id TEXT PRIMARY KEY,
    psn_no TEXT NOT NULL,
    visit_day TEXT NOT NULL,
    fixmedins_code TEXT NOT NULL,
    visit_type INTEGER NOT NULL,
    diag_code TEXT NOT NULL,
    rx_id TEXT NOT NULL,
    item_codes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS visit_log_by_person_day ON visit_log (psn_no, visit_day);
-- Fund-supervision flags: stored with the settlement they were raised on.
CREATE TABLE IF NOT EXISTS audit_flags (
    flag_no INTEGER PRIMARY KEY,
    setl_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    field TEXT NOT NULL,
    detail TEXT NOT NULL,
    fixmedins_code TEXT NOT NULL,
    flag_day TEXT NOT NULL,
    flagged_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_flags_by_day ON audit_flags (flag_day, fixmedins_code);
CREATE TRIGGER IF NOT EXISTS audit_flags_append_only_u BEFORE UPDATE ON audit_flags
BEGIN SELECT RAISE(ABORT, 'audit flags are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_flags_append_only_d BEFORE DELETE ON audit_flags
BEGIN SELECT RAISE(ABORT, 'audit flags are append-only'); END;
