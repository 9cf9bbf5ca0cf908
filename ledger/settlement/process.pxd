# The processor's own values as compiled classes (process.py): each field a
# C struct member, read as one where a local is declared of its type.

cdef class _Site:
    cdef public object institution, visits, _overrides, _catalogue, _pay_locs
    cpdef catalogues(self)
    cpdef pay_loc_of(self, insuplc_admdvs)


cdef class _Batch:
    cdef public object write, setl_no, entry_no, last_hash, by_key, by_setl_id, reversed, looked_up, found
    cdef public object keys_assumed_new
