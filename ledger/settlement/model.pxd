# The values built per settlement, as compiled classes (model.py): each
# field a C struct member, so compiled code that declares a value's type
# reads it without a lookup by name. Every field is an object, as
# interpreted: an IntEnum stays one, any value is stored as given.

cdef class _FrozenValue:
    pass


cdef class FeeLine(_FrozenValue):
    cdef readonly object feedetl_sn, hilist_code, cnt, pric_fen


cdef class Bill(_FrozenValue):
    cdef readonly object msgid, fixmedins_code, psn_no, insutype, insuplc_admdvs, visit_type, fee_lines
    cdef readonly object acct_used_flag, diag_code, prior_offline_diag_date, rx_id, prescribing_fixmedins_code
    cdef readonly object delivery_fee_fen, ecert_token, ecert_nonce, ecert_expires_us, prescription, pharmacist_id


cdef class PersonState(_FrozenValue):
    cdef readonly object psn_no, insutype, insuplc_admdvs, acct_balc_fen, years


cdef class Accumulators:
    cdef public object dedc_used_fen, fund_paid_fen, acct_balc_fen


cdef class LineSplit(_FrozenValue):
    cdef readonly object feedetl_sn, category, det_item_fee_sumamt_fen, fulamt_ownpay_amt_fen
    cdef readonly object overlmt_selfpay_fen, preselfpay_amt_fen, inscp_scp_amt_fen


cdef class Split(_FrozenValue):
    cdef readonly object medfee_sumamt_fen, fulamt_ownpay_amt_fen, overlmt_selfpay_fen, preselfpay_amt_fen
    cdef readonly object inscp_scp_amt_fen, act_pay_dedc_fen, hifp_pay_fen, fund_pay_sumamt_fen, psn_part_amt_fen
    cdef readonly object hosp_part_amt_fen, acct_pay_fen, psn_cash_pay_fen, balc_fen, line_splits


cdef class Settlement(_FrozenValue):
    cdef readonly object setl_id, msgid, fixmedins_code, psn_no, insutype, insuplc_admdvs, mdtrtarea_admvs
    cdef readonly object clr_type, pay_loc, kind, orig_setl_id, setl_time, setlym, split, audit_flags, payee_code
