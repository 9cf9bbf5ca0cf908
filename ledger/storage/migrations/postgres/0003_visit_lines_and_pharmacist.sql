-- What the supervision export needs of each settled visit beyond step 1's
-- visit_log (ledger/storage/internet_state.py), added as columns with
-- defaults, so rows written before this step read as "not recorded":
-- line_facts: each fee line's quantity and unit price in fen, in the bill's
--   order, "cnt:pric_fen" joined by ",";
-- pharmacist_id: who checked a pharmacy sale ("" where none was given).
ALTER TABLE visit_log ADD COLUMN line_facts TEXT NOT NULL DEFAULT '';
ALTER TABLE visit_log ADD COLUMN pharmacist_id TEXT NOT NULL DEFAULT '';
