# The processor's own values as compiled classes (process.py): each field a
# C struct member, read as one where a local is declared of its type.

# Their base refuses a change (model.py); it has no fields, so Cython's
# warning that it cannot tell a base's fields from another module is moot.
from medsettle.ledger.settlement.model cimport _FrozenValue


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
