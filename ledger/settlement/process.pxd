# The processor's own values as compiled classes (process.py): each field a
# C struct member, read as one where a local is declared of its type.

# Their base refuses a change (model.py); it has no fields, so Cython's
# warning that it cannot tell a base's fields from another module is moot.
from medsettle.ledger.settlement.model cimport Bill, Settlement, _FrozenValue
from medsettle.ledger.settlement.internet_stage cimport InternetStage


cdef class SettleCommand(_FrozenValue):
    cdef readonly object bill, persist


cdef class ReverseCommand(_FrozenValue):
    cdef readonly object msgid, fixmedins_code, setl_id


cdef class _Site:
    cdef public object institution, visits, _overrides, _catalogue, _pay_locs
    cpdef catalogues(self)
    cpdef pay_loc_of(self, insuplc_admdvs)


cdef class _Batch:
    cdef public object write, setl_no, entry_no, last_hash, by_key, by_setl_id, reversed, looked_up, found
    cdef public object keys_assumed_new


cdef class SettlementProcessor:
    cdef public object _store, _reference, _clock, _persons, _split_terms, _sites, _month, conflicts, key_reruns
    cdef public InternetStage _internet
    cpdef _settle(self, SettleCommand command, _Batch batch)
    cpdef _earlier(self, code, msgid, fingerprint, _Batch batch)
    cpdef _site(self, code)
    cpdef _month_of(self, now)
    cpdef _person(self, psn_no, _Batch batch)
    cpdef _terms(self, Bill bill, institution)
    cpdef _post(self, _Batch batch, Settlement settlement, fingerprint, payee_code)
