-- Verified checkpoints of the hash chains (ledger/chain_checkpoint.py), one
-- list per chain (a writer's chain_heads row): at verified_us, the chain's
-- entry entry_no, whose hash was entry_hash, and every entry of the chain
-- before it passed every per-entry check; settlements up to setl_no had their
-- entry. Each row hashes the one before it on its chain. A clearing run
-- checks only each chain's entries after its newest row and appends a row on
-- each chain it checked; `medsettle verify` checks every entry.
CREATE TABLE chain_checkpoints (
    chain_id INTEGER NOT NULL,
    entry_no BIGINT NOT NULL,
    entry_hash TEXT NOT NULL,
    setl_no BIGINT NOT NULL,
    verified_us BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (chain_id, entry_no)
);
CREATE TRIGGER chain_checkpoints_append_only BEFORE UPDATE OR DELETE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION medsettle_refuse_change('chain checkpoints');
CREATE TRIGGER chain_checkpoints_no_truncate BEFORE TRUNCATE ON chain_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION medsettle_refuse_change('chain checkpoints');
