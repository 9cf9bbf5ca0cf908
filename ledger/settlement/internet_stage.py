"""The "Internet+" and fund-supervision stage of the settlement writer.

SettlementProcessor calls it for every bill (prepare before the split,
after_split once the fund part is known, stage once the settlement has its
id) and every reversal, and around each batch (begin, write before the
commit, committed / rolled_back after). The rules themselves are pure
(settlement/internet.py, settlement/quota.py, supervision/rules.py); this
class holds the state they need, staged per batch and written in the same
transaction, with committed values cached so the hot path rarely reads.
"""

# cython: nonecheck=True
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any, Sequence

from medsettle.ledger.clock import CHINA_TZ, china_time
from medsettle.ledger.errors import Reason, Refused, refused_field
from medsettle.ledger.reference.internet import Agreement, HostQuota, RegionInternetPolicy
from medsettle.ledger.reference.models import CatalogueItem, Institution, InstitutionKind, ReferenceData
from medsettle.ledger.settlement.agreements import agreement_in_force, check_scope, merged
from medsettle.ledger.settlement.internet import (
    check_followup,
    check_online_identity,
    check_online_scope,
    direct_lines,
    effective_item,
    rule_refused,
)
from medsettle.ledger.settlement.model import Bill, ClrType, FeeLine, Settlement, SettlementKind, Split, VisitType
from medsettle.ledger.settlement.prescriptions import (
    RxRecord,
    check_prescribed_items,
    check_rx_only,
    check_sale,
    fill_of,
    record_of,
    valid_days_of,
)
from medsettle.ledger.settlement.quota import QUOTA_RULE, REFUSE, WARN, quota_decision, quota_holder
from medsettle.ledger.settlement.split import SplitTerms
from medsettle.ledger.storage.port import InternetState, InternetWrite
from medsettle.ledger.storage.rows import to_us
from medsettle.ledger.supervision.day_visits import NO_ACTIVITY, DayVisits
from medsettle.ledger.supervision.rules import DayActivity, Finding, RuleSet

try:
    import cython
except ImportError:  # Cython only builds the compiled core: interpreted runs need none
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]

if cython.compiled:  # the values' C struct members, read where a local is declared of their type (model.pxd)
    from cython.cimports.medsettle.ledger.settlement.model import Bill, FeeLine, Settlement, Split

KNOWN_LINE_FACTS = 4096  # a fee line's "cnt:pric_fen" texts kept for reuse
PRUNE_EVERY_BATCHES = 1000  # how often used e-cert nonces a day past expiry are forgotten
NONCE_KEPT_US = 86_400 * 1_000_000


_FOLLOWUP = VisitType.INTERNET_FOLLOWUP
_PHARMACY = VisitType.PHARMACY
_ONE_DAY = dt.timedelta(days=1)


def china_day(at: dt.datetime) -> dt.date:
    return china_time(at).date()


@cython.cclass
class ChinaDay:
    """One China day: its date, as text and year, and the instants it spans.
    The writer asks for the day of every settlement; instants of the day it
    knows are answered by two comparisons (the clock's same instant by one).
    Compiled, its fields are struct members (internet_stage.pxd)."""

    if not cython.compiled:
        __slots__ = ("at", "date", "iso", "year", "_start", "_end")

    def __init__(self, at: dt.datetime) -> None:
        self.at = at
        self.date = china_day(at)
        self.iso = self.date.isoformat()
        self.year = self.date.year
        start = dt.datetime.combine(self.date, dt.time(), CHINA_TZ)
        end = dt.datetime.combine(self.date + _ONE_DAY, dt.time(), CHINA_TZ)
        # A day whose UTC offset changes (daylight saving, none in China since
        # 1991) is not taken for an interval: only `at` itself is known.
        if start.utcoffset() != end.utcoffset():
            start = end = at
        self._start = start.astimezone(dt.timezone.utc)
        self._end = end.astimezone(dt.timezone.utc)

    def holds(self, at: dt.datetime) -> bool:
        return at is self.at or self._start <= at < self._end


@cython.cclass
class Site:
    """What the stage needs of one institution, looked up once: the reference
    data is fixed for the stage's life."""

    if not cython.compiled:
        __slots__ = ("treatment", "rules", "quotas", "internet_hospital")

    def __init__(self, institution: Institution, internet: Any, rules: RuleSet) -> None:
        self.treatment: RegionInternetPolicy = internet.policy(institution.admdvs)
        self.rules = rules
        holder = quota_holder(institution)
        # the host quota it counts against, by year
        self.quotas: dict[int, HostQuota] = {
            year: quota for (host, year), quota in internet.quotas.items() if holder and host == holder
        }
        self.internet_hospital = institution.kind == InstitutionKind.INTERNET_HOSPITAL


@cython.cclass
class Plan:
    """What prepare learnt about one bill, for after_split and stage."""

    if not cython.compiled:
        __slots__ = ("bill", "institution", "site", "day", "year", "flags", "activity", "rx_key", "rx_valid_days",
                     "payee_code", "quota_key", "quota_after_fen", "quota_note")

    def __init__(self, bill: Bill, institution: Institution, site: Site, day: str, year: int, flags: list[Finding],
                 activity: DayActivity, rx_key: tuple[str, str] | None = None, rx_valid_days: int = 0,
                 payee_code: str = "") -> None:
        self.bill = bill
        self.institution = institution
        self.site = site
        self.day = day
        self.year = year
        self.flags = flags
        self.activity = activity  # the person's day before this bill
        self.rx_key = rx_key  # a sale of this recorded prescription
        self.rx_valid_days = rx_valid_days  # the prescription issued with the visit: its validity
        self.payee_code = payee_code  # who the fund part is payable to, when an agreement says (else the institution)
        self.quota_key = None  # (host, year), once after_split counted the settlement against a quota
        self.quota_after_fen = 0
        self.quota_note = ""  # set when the settlement takes the host past its quota (warn)


class StagedPrescriptions:
    """The open batch's changes to recorded e-prescriptions, seen by the
    batch's later commands before they are written."""

    __slots__ = ("issued", "voided", "delta", "filled_by")

    def __init__(self) -> None:
        self.issued: dict[tuple[str, str], RxRecord] = {}
        self.voided: set[tuple[str, str]] = set()
        self.delta: dict[tuple[str, str], dict[str, int]] = {}  # key -> code -> filled (+) / freed (-)
        self.filled_by: dict[str, list[tuple[tuple[str, str], str, int]]] = {}  # sale setl_id -> fills

    def add(self, key: tuple[str, str], code: str, cnt: int) -> None:
        by_code = self.delta.setdefault(key, {})
        by_code[code] = by_code.get(code, 0) + cnt

    def fill(self, setl_id: str, key: tuple[str, str], taking: dict[str, int]) -> None:
        for code, cnt in taking.items():
            self.add(key, code, cnt)
        self.filled_by[setl_id] = [(key, code, cnt) for code, cnt in taking.items()]


@cython.cclass
class InternetStage:
    """Compiled, its fields are struct members and its helpers C calls (internet_stage.pxd)."""

    if not cython.compiled:
        __slots__ = ("_state", "_sole_writer", "_reference", "_internet", "_rule_sets", "_sites", "_insurance",
                     "_internet_codes", "_today", "_items", "_line_facts", "_quota_used", "_days", "_write",
                     "_staged_days", "_staged_rx", "_staged_nonces", "_rx", "_reference_agreements", "_agreements",
                     "_batches", "_now_us")

    def __init__(self, state: InternetState, reference: ReferenceData, *, sole_writer: bool = True,
                 days: DayVisits | None = None) -> None:
        """sole_writer: no other process writes this state, so committed
        values may be cached across batches (else they are read per batch).
        days: the persons' days kept, within its bounds (default: DayVisits())."""
        self._state = state
        self._sole_writer = sole_writer
        self._reference = reference
        self._internet = reference.internet
        self._rule_sets: dict[str, RuleSet] = {}  # by treatment region
        self._sites: dict[str, Site] = {}  # by institution code
        self._insurance: dict[str, RegionInternetPolicy] = {}  # by insurance region
        self._internet_codes = frozenset(
            code for code, institution in reference.institutions.items()
            if institution.kind == InstitutionKind.INTERNET_HOSPITAL
        )
        self._today = ChinaDay(dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
        self._items: dict[tuple[str, int, str, str], CatalogueItem] = {}
        self._line_facts: dict[tuple[int, int], str] = {}
        # committed state, cached; staged state of the open batch
        self._quota_used: dict[tuple[str, int], int] = {}
        self._days = DayVisits() if days is None else days
        self._write = InternetWrite()
        # the batch's persons' days: as kept or read at its start, then after each of its visits
        self._staged_days: dict[str, DayActivity] = {}
        self._staged_rx: dict[tuple[str, str], str | None] = {}  # None: released in this batch
        self._staged_nonces: set[str] = set()
        self._rx = StagedPrescriptions()
        # agreements: the reference document's by internet hospital; the batch's, with the operators' changes
        self._reference_agreements: dict[str, list[Agreement]] = {}
        for agreement in self._internet.agreements:
            self._reference_agreements.setdefault(agreement.internet_code, []).append(agreement)
        self._agreements: dict[str, list[Agreement]] = {}
        self._batches = 0
        self._now_us = 0

    # ---- batch -------------------------------------------------------
    def begin(self, commands: Sequence[Any], now: dt.datetime) -> None:
        """Starts a batch: the day of its persons, those not kept read in one query."""
        self._write = InternetWrite()
        self._staged_days = {}
        self._staged_rx = {}
        self._staged_nonces = set()
        self._rx = StagedPrescriptions()
        self._now_us = to_us(now)
        psn_nos: set[str] = set()
        codes: set[str] = set()
        for command in commands:
            bill = getattr(command, "bill", None)
            if bill is not None:
                psn_nos.add(bill.psn_no)
                codes.add(bill.fixmedins_code)
        self._agreements = self._batch_agreements(codes)
        today = self._day_of(now)
        days = self._days
        if not self._sole_writer:
            self._quota_used.clear()
            days.start("")
            self._claim_quotas(commands, today.year)
        days.start(today.iso)
        staged = self._staged_days
        missing = []
        for psn_no in psn_nos:
            activity = days.get(psn_no)
            if activity is None:
                missing.append(psn_no)
            else:
                staged[psn_no] = activity
        if missing:
            self._read_days(sorted(missing))

    def _read_days(self, psn_nos: list[str]) -> None:
        """The day of persons not kept, from the visit log (most did nothing yet today)."""
        found = self._state.day_visits(psn_nos, self._days.day)
        for psn_no in psn_nos:
            activity = found.get(psn_no)
            self._staged_days[psn_no] = NO_ACTIVITY if activity is None else self._days.record(*activity)

    def _claim_quotas(self, commands: Sequence[Any], year: int) -> None:
        """Where several servers write one ledger, reading a host quota locks
        it until the batch ends: read every quota the batch may add to now,
        in sorted order, so two servers' batches never take two quotas in
        opposite orders (a deadlock, which costs each a rerun)."""
        keys = set()
        for command in commands:
            bill = getattr(command, "bill", None)
            institution = self._reference.institutions.get(bill.fixmedins_code if bill else command.fixmedins_code)
            holder = quota_holder(institution) if institution is not None else None
            if holder and (holder, year) in self._internet.quotas:
                keys.add((holder, year))
        for key in sorted(keys):
            self._used(key)

    def write(self) -> None:
        if not self._write.empty():
            self._state.write(self._write)
        self._batches += 1
        if self._batches % PRUNE_EVERY_BATCHES == 0:
            self._state.prune_nonces(self._now_us - NONCE_KEPT_US)

    def committed(self) -> None:
        self._quota_used.update(self._write.quota_used)
        self._days.keep(self._staged_days)
        self._write = InternetWrite()

    def rolled_back(self) -> None:
        self._write = InternetWrite()

    # ---- settle --------------------------------------------------------
    @cython.locals(day=ChinaDay, site=Site)
    def prepare(
        self, bill: Bill, institution: Institution, priced: list[tuple[FeeLine, CatalogueItem]],
        terms: SplitTerms, now: dt.datetime,
    ) -> tuple[list[tuple[FeeLine, CatalogueItem]], SplitTerms, Plan]:
        """Applies the regional internet policy and runs the audit rules;
        raises Refused (RULE_REFUSED naming the rule) when one refuses.
        An ordinary offline bill meets a few comparisons: each rule's
        precondition is read from tables made once per institution and region."""
        day = self._today
        if now is not day.at:  # the clock's same instant: the same day
            day = self._day_of(now)
        today = day.date
        site = self._sites.get(institution.code) or self._site(institution)
        treatment = site.treatment
        insurance = self._insurance.get(bill.insuplc_admdvs) or self._insurance_policy(bill.insuplc_admdvs)
        followup = bill.visit_type == _FOLLOWUP
        if followup:
            check_online_identity(bill, institution.admdvs, treatment)
            check_followup(bill, treatment, today)
            check_online_scope(priced, treatment)
        payee_code = ""
        if site.internet_hospital:
            payee_code = self._agreement_payee(bill, institution, priced, treatment, today)
            if not insurance.online_acct_allowed:
                terms = replace(terms, acct_allowed=False)
        # the hot path: an offline bill of a region without remote coverage keeps its lines
        if insurance.remote is not None or followup:
            priced = [(line, self._effective(bill, institution, item, insurance)) for line, item in priced]
            direct = direct_lines(priced, insurance.remote, bill.insuplc_admdvs)
            if direct:
                terms = replace(terms, direct_lines=direct)
        rx_key = None
        if bill.visit_type == _PHARMACY:
            check_rx_only(bill, priced)
            if bill.rx_id:
                rx_key = self._check_prescription(bill, institution, today)
        rx_valid_days = 0
        if bill.prescription is not None:
            rx_valid_days = self._check_issue(bill, institution)
        if bill.ecert_nonce and (bill.ecert_nonce in self._staged_nonces or self._state.nonce_seen(bill.ecert_nonce)):
            raise rule_refused("ECERT_REPLAY", "ecert_token", "this e-insurance certificate was already used; show a new one")
        rules = site.rules
        prior = self._prior_offline_visit(bill, treatment, today) if followup and rules.checks_followups else True
        if day.iso != self._days.day:  # the batch began before midnight: this bill's day began since
            self._days.start(day.iso)
            self._staged_days = {}  # the persons' days are read again, of this bill's day
        activity = self._staged_days.get(bill.psn_no)
        if activity is None:  # not one of the batch's persons begin saw, or of a day begun since
            self._read_days([bill.psn_no])
            activity = self._staged_days[bill.psn_no]
        findings = rules.evaluate(bill, priced, activity, prior)
        if rules.refuses:
            for finding in findings:
                if finding.refuses:
                    raise rule_refused(finding.code, finding.field, finding.detail)
        return priced, terms, Plan(bill, institution, site, day.iso, day.year, findings, activity, rx_key,
                                   rx_valid_days, payee_code)

    @cython.locals(site=Site)
    def after_split(self, plan: Plan, split: Split) -> tuple[str, ...]:
        """The quota check, once the fund part is known; the flags to return."""
        site = plan.site
        quota = site.quotas.get(plan.year) if site.quotas else None
        if quota is None:
            return tuple([f.code for f in plan.flags]) if plan.flags else ()
        codes = [f.code for f in plan.flags]
        key = (quota.host_code, plan.year)
        used = self._used(key)
        decision = quota_decision(quota, used, split.hifp_pay_fen)
        if decision is REFUSE:
            raise rule_refused(QUOTA_RULE, "fixmedins_code",
                               f"the host hospital {quota.host_code}'s {plan.year} budget quota is reached; "
                               "the fund pays no more this year")
        plan.quota_key = key
        plan.quota_after_fen = used + split.hifp_pay_fen
        if decision is WARN:
            codes.append(QUOTA_RULE)
            plan.quota_note = (f"host {quota.host_code} {plan.year} quota of {quota.quota_fen} fen reached "
                               f"({plan.quota_after_fen} fen used)")
        return tuple(codes)

    @cython.locals(bill=Bill, line=FeeLine)
    def stage(self, plan: Plan, settlement: Settlement, setl_time_us: int | None = None) -> None:
        """Records what a persisted settlement changes, in the open batch.
        setl_time_us: to_us(settlement.setl_time) when the caller has it already."""
        bill = plan.bill
        us = to_us(settlement.setl_time) if setl_time_us is None else setl_time_us
        write = self._write
        if plan.quota_key is not None:
            write.quota_used[plan.quota_key] = plan.quota_after_fen
        if plan.rx_key is not None:
            taking = fill_of(bill)
            for code, cnt in taking.items():
                write.rx_fill_items.append((settlement.setl_id, *plan.rx_key, code, cnt, bill.pharmacist_id))
            self._rx.fill(settlement.setl_id, plan.rx_key, taking)
        elif bill.rx_id and bill.visit_type == _PHARMACY:  # a prescription never recorded: fill once
            write.rx_fills.append((settlement.setl_id, bill.prescribing_fixmedins_code, bill.rx_id, bill.fixmedins_code, us))
            self._staged_rx[(bill.prescribing_fixmedins_code, bill.rx_id)] = settlement.setl_id
        if bill.prescription is not None:
            record = record_of(bill, bill.prescription, settlement.setl_id, dt.date.fromisoformat(plan.day),
                               plan.rx_valid_days)
            write.rx_issued.append(record)
            self._rx.issued[(record.prescribing_code, record.rx_id)] = record
        if bill.ecert_nonce:
            # forgotten a day after expiry (PRUNE_EVERY_BATCHES); the token itself is never stored
            write.nonces.append((bill.ecert_nonce, us, bill.ecert_expires_us))
            self._staged_nonces.add(bill.ecert_nonce)
        codes = []
        facts = []  # each line's quantity and unit price, for the supervision export (visit_log.line_facts)
        known_facts = self._line_facts
        for line in bill.fee_lines:
            codes.append(line.hilist_code)
            key = (line.cnt, line.pric_fen)
            fact = known_facts.get(key)
            if fact is None:
                fact = self._line_fact(key)
            facts.append(fact)
        item_codes = ",".join(codes)
        # +visit_type: an IntEnum's plain int (int() is a call)
        write.visits.append((settlement.setl_id, bill.psn_no, plan.day, bill.fixmedins_code, +bill.visit_type,
                             bill.diag_code.upper(), bill.rx_id, item_codes, ",".join(facts), bill.pharmacist_id))
        # nothing of this person was staged since prepare
        self._staged_days[bill.psn_no] = self._days.after_visit(plan.activity, item_codes, codes)
        for finding in plan.flags:
            write.flags.append((settlement.setl_id, finding.code, finding.field, finding.detail,
                                bill.fixmedins_code, plan.day, us))
        if plan.quota_note:
            write.flags.append((settlement.setl_id, QUOTA_RULE, "fixmedins_code", plan.quota_note,
                                bill.fixmedins_code, plan.day, us))

    # ---- reverse -------------------------------------------------------
    def check_reversal(self, original: Settlement) -> None:
        """Refuses (RULE_REFUSED, rule RX_DISPENSED) to reverse a visit whose
        e-prescription a pharmacy has filled, wholly or in part, while a fill
        stands: the drugs are out, paid against this visit, and a reversal
        would leave that sale with no visit behind it (and let the visit be
        settled again with a new prescription for the same drugs). The
        pharmacy reverses its sale when the drugs come back; then the visit
        can be reversed and its prescription is voided. Called before the
        reversal is staged, so a refusal writes nothing."""
        if original.clr_type == ClrType.PHARMACY:
            return
        key = self._issued_by(original.setl_id)
        if key is None:
            return
        self._rx_record(key)  # several servers: locks the prescription's row, as a sale does, until the batch ends
        if any(cnt > 0 for cnt in self._rx_filled(key).values()):
            raise rule_refused("RX_DISPENSED", "setl_id",
                               f"e-prescription {key[1]} issued with this visit was dispensed at a pharmacy; the "
                               "pharmacy reverses its sale (the drugs returned) before the visit can be reversed")

    def reverse(self, original: Settlement, reversal: Settlement) -> None:
        """A reversal gives back the quota the original used and frees its
        e-prescription (the sale was cancelled: the prescription may be filled
        again). Visits and flags stay: supervision sees what happened."""
        assert reversal.kind == SettlementKind.REVERSAL
        institution = self._reference.institutions.get(original.fixmedins_code)
        holder = quota_holder(institution) if institution is not None else None
        year = china_day(original.setl_time).year
        if holder and (holder, year) in self._internet.quotas and original.split.hifp_pay_fen:
            key = (holder, year)
            self._write.quota_used[key] = self._used(key) - original.split.hifp_pay_fen
        released = [k for k, v in self._staged_rx.items() if v == original.setl_id]
        if released or self._state.rx_fill_of(original.setl_id):
            self._write.rx_releases.append((reversal.setl_id, original.setl_id))
            for key in released:
                self._staged_rx[key] = None
        if original.clr_type == ClrType.PHARMACY:
            taken = self._rx.filled_by.pop(original.setl_id, None)
            if taken is None:
                taken = [((pc, rx), code, cnt) for pc, rx, code, cnt in self._state.rx_fill_items_of(original.setl_id)]
            if taken:
                self._write.rx_item_releases.append((reversal.setl_id, original.setl_id))
                for key, code, cnt in taken:
                    self._rx.add(key, code, -cnt)
        else:
            issued = self._issued_by(original.setl_id)  # check_reversal saw no live fill of it
            if issued is not None:
                self._write.rx_voids.append((reversal.setl_id, original.setl_id))
                self._rx.voided.add(issued)

    # ---- helpers ---------------------------------------------------------
    def _line_fact(self, key: tuple[int, int]) -> str:
        """"cnt:pric_fen" of a fee line, kept for reuse (most bills repeat a few)."""
        if len(self._line_facts) >= KNOWN_LINE_FACTS:
            self._line_facts.clear()
        fact = self._line_facts[key] = f"{key[0]}:{key[1]}"
        return fact

    @cython.locals(bill=Bill)
    def _effective(self, bill: Bill, institution: Institution, item: CatalogueItem, insurance: Any) -> CatalogueItem:
        key = (bill.insuplc_admdvs, int(bill.visit_type), institution.province, item.code)
        found = self._items.get(key)
        if found is None:
            found = self._items[key] = effective_item(item, bill.visit_type, insurance)
        return found

    @cython.locals(day=ChinaDay)
    def _day_of(self, now: dt.datetime) -> ChinaDay:
        day = self._today
        if not day.holds(now):
            day = self._today = ChinaDay(now)
        return day

    def _site(self, institution: Institution) -> Site:
        rules = self._rule_sets.get(institution.admdvs)
        if rules is None:
            rules = self._rule_sets[institution.admdvs] = RuleSet(self._internet.audit_rules(institution.admdvs))
        site = self._sites[institution.code] = Site(institution, self._internet, rules)
        return site

    def _insurance_policy(self, admdvs: str) -> RegionInternetPolicy:
        policy = self._insurance[admdvs] = self._internet.policy(admdvs)
        return policy

    def _used(self, key: tuple[str, int]) -> int:
        if key in self._write.quota_used:
            return self._write.quota_used[key]
        if key not in self._quota_used:
            self._quota_used[key] = self._state.quota_used(*key)
        return self._quota_used[key]

    def _batch_agreements(self, batch_codes: set[str]) -> dict[str, list[Agreement]]:
        """The agreements of the batch's internet hospitals (batch_codes: its
        bills' institutions), read per batch (an operator may suspend one
        while the server runs)."""
        codes = sorted(batch_codes & self._internet_codes)
        if not codes:
            return {}
        stored: dict[str, list[Agreement]] = {}
        for agreement in self._state.agreements_of(codes):
            stored.setdefault(agreement.internet_code, []).append(agreement)
        return {code: merged(self._reference_agreements.get(code, ()), stored.get(code, ())) for code in codes}

    def _agreement_payee(self, bill: Bill, institution: Institution, priced: list[tuple[FeeLine, CatalogueItem]],
                         treatment: RegionInternetPolicy, today: dt.date) -> str:
        """The payee under the agreement in force; refuses where the region
        requires one and none covers the bill."""
        agreements = self._agreements.get(institution.code, [])
        if not (agreements or treatment.agreement_required):
            return ""
        try:
            agreement = agreement_in_force(agreements, bill.visit_type, today)
        except Refused:
            if treatment.agreement_required:
                raise
            return ""
        check_scope(agreement, priced)
        return agreement.payee_code()

    def _check_prescription(self, bill: Bill, pharmacy: Institution, today: dt.date) -> tuple[str, str] | None:
        """Matches a pharmacy sale against its recorded prescription; the
        prescription's key, or None for one never recorded (filled once,
        where the pharmacy's region does not require a record)."""
        prescriber = self._reference.institutions.get(bill.prescribing_fixmedins_code)
        if prescriber is None or prescriber.kind == InstitutionKind.PHARMACY:
            raise refused_field(Reason.UNKNOWN_INSTITUTION, "prescribing_fixmedins_code",
                                "not a hospital or internet hospital that may issue prescriptions")
        key = (bill.prescribing_fixmedins_code, bill.rx_id)
        record = self._rx_record(key)
        if record is not None:
            check_sale(bill, record, self._rx_filled(key), today)
            return key
        if self._internet.policy(pharmacy.admdvs).rx_record_required:
            raise rule_refused("RX_UNKNOWN", "rx_id",
                               "no e-prescription with this id was issued by the prescribing institution")
        if key in self._staged_rx:
            filled = self._staged_rx[key]
        else:
            filled = self._state.rx_filled_by(*key)
            if filled is not None and filled in self._released_in_batch():
                filled = None
        if filled is not None:
            raise rule_refused("RX_ALREADY_FILLED", "rx_id",
                               f"this e-prescription was already filled (settlement {filled}); it cannot be filled twice")
        return None

    def _rx_record(self, key: tuple[str, str]) -> RxRecord | None:
        record = self._rx.issued.get(key) or self._state.rx_record(*key)
        if record is not None and key in self._rx.voided:
            record = replace(record, voided=True)
        return record

    def _issued_by(self, setl_id: str) -> tuple[str, str] | None:
        """(prescriber, rx_id) of the e-prescription a visit issued, in this batch or before."""
        return next((k for k, r in self._rx.issued.items() if r.setl_id == setl_id), None) \
            or self._state.rx_issued_by(setl_id)

    def _rx_filled(self, key: tuple[str, str]) -> dict[str, int]:
        filled = {} if key in self._rx.issued else self._state.rx_filled(*key)
        for code, cnt in self._rx.delta.get(key, {}).items():
            filled[code] = filled.get(code, 0) + cnt
        return filled

    def _check_issue(self, bill: Bill, institution: Institution) -> int:
        """Checks a prescription issued with the visit; its validity in days."""
        rx = bill.prescription
        assert rx is not None
        check_prescribed_items(rx, lambda code: self._reference.item(institution.province, code))
        key = (bill.fixmedins_code, rx.rx_id)
        if key in self._rx.issued or self._state.rx_record(*key) is not None:
            raise rule_refused("RX_ID_TAKEN", "prescription.rx_id",
                               "this institution already issued an e-prescription with this id")
        return valid_days_of(rx, self._internet.policy(institution.admdvs))

    def _released_in_batch(self) -> set[str]:
        return {orig for _, orig in self._write.rx_releases}

    def _prior_offline_visit(self, bill: Bill, treatment: RegionInternetPolicy, today: dt.date) -> bool:
        """Whether a follow-up's offline visit for its disease is on record
        (asked only where a rule checks it)."""
        category = bill.diag_code.upper()[:3]
        since = treatment.followup_earliest(today).isoformat()
        for visit in self._write.visits:
            if visit[1] == bill.psn_no and visit[4] in (1, 2) and visit[5][:3] == category and visit[2] >= since:
                return True
        return self._state.offline_visit_since(bill.psn_no, category, since)
