# The stage's own state as compiled classes (internet_stage.py): each field a
# C struct member, read as one where a local is declared of its type, and
# the helpers the hot path calls per settlement C calls.

from medsettle.ledger.settlement.model cimport Bill, Settlement, Split

cdef class ChinaDay:
    cdef public object at, date, iso, year, _start, _end
    cpdef holds(self, at)


cdef class Site:
    cdef public object treatment, rules, quotas, internet_hospital


cdef class Plan:
    cdef public object bill, institution, site, day, year, flags, activity, rx_key, rx_valid_days, payee_code
    cdef public object quota_key, quota_after_fen, quota_note


cdef class InternetStage:
    cdef public object _state, _sole_writer, _reference, _internet, _rule_sets, _sites, _insurance, _internet_codes
    cdef public object _today, _items, _line_facts, _quota_used, _days, _write, _staged_days, _staged_rx
    cdef public object _staged_nonces, _rx, _reference_agreements, _agreements, _batches, _now_us
    cpdef prepare(self, Bill bill, institution, priced, terms, now)
    cpdef after_split(self, Plan plan, Split split)
    cpdef stage(self, Plan plan, Settlement settlement, setl_time_us=*)
    cpdef _day_of(self, now)
    cpdef _used(self, key)
    cpdef _line_fact(self, key)
