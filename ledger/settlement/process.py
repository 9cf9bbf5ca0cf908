"""Settles and reverses inside the writer: idempotency, reference checks,
the split against the person's accumulators, the postings. Runs on the
writer thread (or the writer process) only; one batch is one transaction on
the storage port (ledger/storage/port.py), whichever backend implements it."""

# cython: nonecheck=True
from __future__ import annotations

import datetime as dt
from hashlib import sha256
from typing import Any, Sequence

from medsettle.ledger.clock import CHINA_TZ, Clock, period_bounds, period_of, year_of
from medsettle.ledger.errors import FieldViolation, Reason, Refused, refused_field
from medsettle.ledger.posting.journal import entry_hash_of_lines
from medsettle.ledger.posting.rules import posting_lines
from medsettle.ledger.reference.models import (
    CatalogueItem,
    Institution,
    InstitutionKind,
    ReferenceData,
    VisitKind,
)
from medsettle.ledger.settlement.model import (
    CLR_TYPE_OF_VISIT,
    Accumulators,
    Bill,
    FeeLine,
    PayLoc,
    PersonState,
    Settlement,
    SettlementKind,
    Split,
    VisitType,
    _FrozenValue,
    interpreted_value,
    pay_loc_of,
)
from medsettle.ledger.settlement.internet_stage import InternetStage
from medsettle.ledger.settlement.split import SplitTerms, accumulate, split_bill
from medsettle.ledger.storage.port import (
    MAX_BATCH_ATTEMPTS,
    BatchWrite,
    LedgerStore,
    StorageError,
    WriteConflict,
)
from medsettle.ledger.storage.rows import settlement_row, to_us

try:
    import cython
except ImportError:  # Cython only builds the compiled core: interpreted runs need none
    from medsettle.server import cython_fallback as cython  # type: ignore[no-redef]

if cython.compiled:  # the values' C struct members, read where a local is declared of their type (model.pxd)
    from cython.cimports.medsettle.ledger.settlement.model import (
        Accumulators, Bill, FeeLine, PersonState, Settlement, Split, _FrozenValue,
    )

VISITS_OF_KIND = {
    InstitutionKind.HOSPITAL: (VisitType.OUTPATIENT, VisitType.INPATIENT),
    InstitutionKind.INTERNET_HOSPITAL: (VisitType.INTERNET_FOLLOWUP,),
    InstitutionKind.PHARMACY: (VisitType.PHARMACY,),
}
# An internet follow-up is priced and paid as a general outpatient visit.
RATIO_TABLE_OF_VISIT = {
    VisitType.OUTPATIENT: VisitKind.OUTPATIENT,
    VisitType.INTERNET_FOLLOWUP: VisitKind.OUTPATIENT,
    VisitType.INPATIENT: VisitKind.INPATIENT,
    VisitType.PHARMACY: VisitKind.PHARMACY,
}
PERSON_CACHE_SIZE = 200_000
# Read once: looking a member up on its enum class costs a dictionary lookup more.
_SETTLE = SettlementKind.SETTLE
_REVERSAL = SettlementKind.REVERSAL
_FIXED_OFFSET = dt.timezone  # the type of UTC and of every fixed offset


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class SettleCommand(_FrozenValue):
    bill: Bill
    persist: bool  # False: pre-settle, nothing stored

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return SettleCommand, (self.bill, self.persist)


@cython.dataclasses.dataclass(frozen=True)
@cython.cclass
class ReverseCommand(_FrozenValue):
    msgid: str
    fixmedins_code: str
    setl_id: str

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return ReverseCommand, (self.msgid, self.fixmedins_code, self.setl_id)

    def fingerprint(self) -> str:
        return f"REVERSE\x1e{self.msgid}\x1e{self.fixmedins_code}\x1e{self.setl_id}"


if not cython.compiled:
    SettleCommand = interpreted_value(SettleCommand)  # type: ignore[misc]
    ReverseCommand = interpreted_value(ReverseCommand)  # type: ignore[misc]


@cython.cclass
class _Site:
    """An institution as the processor settles its bills: the visits it may
    settle and its treatment province's catalogue, looked up once. Compiled,
    its fields are struct members and its methods C calls (process.pxd)."""

    if not cython.compiled:
        __slots__ = ("institution", "visits", "_overrides", "_catalogue", "_pay_locs")

    def __init__(self, institution: Institution, visits: tuple[VisitType, ...],
                 overrides: dict[str, CatalogueItem] | None, catalogue: dict[str, CatalogueItem]) -> None:
        self.institution = institution
        self.visits = visits
        self._overrides = overrides  # None: the province has no entries of its own
        self._catalogue = catalogue
        self._pay_locs = {}  # insurance place -> pay_loc_of it and the treatment place

    def catalogues(self) -> tuple[dict[str, CatalogueItem] | None, dict[str, CatalogueItem]]:
        """Where ReferenceData.item looks for the institution's province, in
        its order: the province's own entries (None: none), the national ones."""
        return self._overrides, self._catalogue

    def pay_loc_of(self, insuplc_admdvs: str) -> PayLoc:
        pay_loc = self._pay_locs.get(insuplc_admdvs)
        if pay_loc is None:
            pay_loc = self._pay_locs[insuplc_admdvs] = pay_loc_of(insuplc_admdvs, self.institution.admdvs)
        return pay_loc


@cython.cclass
class _Batch:
    """One batch while it runs: what it writes, the chain it continues, what
    it settled and looked up. Compiled, its fields are struct members (process.pxd)."""

    if not cython.compiled:
        __slots__ = ("write", "setl_no", "entry_no", "last_hash", "by_key", "by_setl_id", "reversed", "looked_up",
                     "found", "keys_assumed_new")

    def __init__(self, write: BatchWrite, setl_no: int, entry_no: int, last_hash: str,
                 keys_assumed_new: bool = False) -> None:
        self.write = write
        self.setl_no = setl_no
        self.entry_no = entry_no
        self.last_hash = last_hash
        self.by_key = {}  # (fixmedins_code, msgid) -> (settlement, fingerprint)
        self.by_setl_id = {}  # setl_id -> (settlement, payee_code)
        self.reversed = {}  # setl_id -> the setl_id of its reversal
        # The batch's idempotency keys, looked up in one query when the batch
        # starts (or, keys_assumed_new, taken for new); found: those already stored.
        self.looked_up = set()
        self.found = {}  # key -> (settlement, fingerprint)
        self.keys_assumed_new = keys_assumed_new


def _storage_failure(error: Exception) -> Refused:
    return Refused(Reason.STORAGE_UNAVAILABLE, f"storage unavailable ({error}); nothing was written, retry with the same msgid")


def _outcome_unknown(error: Exception) -> Refused:
    """The COMMIT itself failed: on a database across a network the
    connection may have dropped after the commit took effect, so the
    caller is not told that nothing was written."""
    return Refused(Reason.STORAGE_UNAVAILABLE,
                   f"storage unavailable during the commit ({error}); the write may or may not have been stored: "
                   "retry with the same msgid, which returns the stored settlement or settles it once")


def digest(text: str) -> str:
    return sha256(text.encode()).hexdigest()


@cython.cclass
class SettlementProcessor:
    """Compiled, its fields are struct members and the methods it calls per
    settlement C calls, the Internet+ stage's among them (process.pxd)."""

    if not cython.compiled:
        __slots__ = ("_store", "_reference", "_clock", "_persons", "_internet", "_split_terms", "_sites", "_month",
                     "conflicts", "key_reruns")

    def __init__(self, store: LedgerStore, reference: ReferenceData, clock: Clock) -> None:
        self._store = store
        self._reference = reference
        self._clock = clock
        # Committed person state, kept across batches only while this process
        # is the ledger's sole writer; otherwise read (and locked) per batch.
        self._persons: dict[str, PersonState] = {}
        self._internet = InternetStage(store.internet_state(), reference, sole_writer=store.sole_writer)
        self._split_terms: dict[tuple[str, int, VisitType, Any], SplitTerms] = {}
        self._sites: dict[str, _Site] = {}
        # The clearing month of the last settlement: start, end (in tz), period, year, tz.
        self._month: tuple[dt.datetime, dt.datetime, str, int, dt.tzinfo] | None = None
        self.conflicts = 0  # batches run again because another writer changed what they read
        self.key_reruns = 0  # batches run again because a settlement's key taken for new was stored

    def run_batch(self, commands: Sequence[Any]) -> list[Any]:
        """One transaction, run again (at most MAX_BATCH_ATTEMPTS in all)
        while another writer's commit conflicts with it.

        The sole writer first runs a batch reading no idempotency key: every
        settlement's (institution, msgid) is taken for new, and the UNIQUE
        index the settlement's insert updates anyway refuses one that is
        stored (WriteConflict, nothing written); the batch is then run again
        looking its keys up, and the replay answered from its stored
        settlement. A refused settlement's key is looked up before the refusal
        is answered (_refused): a replay may be refused where its first
        request was not (the same-day rules, a used e-cert)."""
        if self._store.sole_writer:
            try:
                return self._run_once(commands, keys_assumed_new=True)
            except WriteConflict:
                self.key_reruns += 1
        for _ in range(MAX_BATCH_ATTEMPTS - 1):
            try:
                return self._run_once(commands)
            except WriteConflict:
                self.conflicts += 1
        try:
            return self._run_once(commands)
        except WriteConflict as error:
            self.conflicts += 1
            return [_storage_failure(error)] * len(commands)

    def _run_once(self, commands: Sequence[Any], keys_assumed_new: bool = False) -> list[Any]:
        """One transaction. The chain head is read under the write lock, so
        another process (the clearing run) may append between batches.
        Raises WriteConflict, with nothing written, where the batch may be run again."""
        if not self._store.sole_writer:
            self._persons.clear()
        try:
            self._store.begin()
            setl_no, entry_no, last_hash = self._store.chain_head()
            batch = _Batch(BatchWrite(), setl_no, entry_no, last_hash, keys_assumed_new)
            self._look_up(commands, batch)
            self._internet.begin(commands, self._clock.now())
        except StorageError as error:
            self._store.rollback()
            if isinstance(error, WriteConflict):
                raise
            return [_storage_failure(error)] * len(commands)
        outcomes: list[Any] = []
        committing = False
        try:
            for command in commands:
                try:
                    if isinstance(command, SettleCommand):
                        outcomes.append(self._settle(command, batch))
                    else:
                        outcomes.append(self._reverse(command, batch))
                except Refused as refusal:
                    outcomes.append(self._refused(command, refusal, batch))
            if batch.write.settlements:
                self._store.insert_batch(batch.write)
                self._internet.write()
            committing = True
            self._store.commit()
        except StorageError as error:
            self._store.rollback()
            self._internet.rolled_back()
            if isinstance(error, WriteConflict):
                raise
            failed = _outcome_unknown(error) if committing else _storage_failure(error)
            return [o if isinstance(o, Refused) else failed for o in outcomes] + [failed] * (len(commands) - len(outcomes))
        except Exception as error:  # a broken invariant: write nothing of this batch
            self._store.rollback()
            self._internet.rolled_back()
            return [Refused(Reason.INTERNAL, f"internal error: {type(error).__name__}; nothing was written")] * len(commands)
        self._remember(batch.write.persons)
        self._internet.committed()
        return outcomes

    @cython.locals(batch=_Batch, settle=SettleCommand, bill=Bill)
    def _look_up(self, commands: Sequence[Any], batch: _Batch) -> None:
        """Reads what the batch needs from the database in two queries (its
        stored idempotency keys, its uncached persons) instead of two per
        command: the writer thread holds the GIL for every statement it runs.
        keys_assumed_new: only the reversals' keys are read (a replayed
        reversal would otherwise be refused as already reversed)."""
        psn_nos: set[str] = set()
        reversal_keys: set[tuple[str, str]] = set()
        for command in commands:
            if isinstance(command, SettleCommand):
                settle = command
                bill = settle.bill
                if settle.persist:
                    batch.looked_up.add((bill.fixmedins_code, bill.msgid))
                if bill.psn_no not in self._persons:
                    psn_nos.add(bill.psn_no)
            else:
                reversal_keys.add((command.fixmedins_code, command.msgid))
        batch.looked_up |= reversal_keys
        keys = reversal_keys if batch.keys_assumed_new else batch.looked_up
        if keys:
            batch.found = self._store.find_by_keys(keys)
        if psn_nos:
            self._remember(self._store.load_persons(psn_nos))

    def _refused(self, command: Any, refusal: Refused, batch: _Batch) -> Any:
        """The answer to a refused command: where its key was taken for new
        without a read, the stored settlement of that key (or the conflict)
        if there is one: a replay is answered as its first request was."""
        if not (batch.keys_assumed_new and isinstance(command, SettleCommand) and command.persist):
            return refusal
        bill = command.bill
        key = (bill.fixmedins_code, bill.msgid)
        if key in batch.by_key:
            return refusal  # the batch's own settlement of the key answered it already
        stored = self._store.find_by_key(*key)
        if stored is None:
            return refusal
        batch.found[key] = (stored[0], stored[1])
        try:
            earlier = self._earlier(bill.fixmedins_code, bill.msgid, digest(bill.fingerprint()), batch)
        except Refused as conflict:
            return conflict
        return earlier

    # ---- settle ------------------------------------------------------
    @cython.locals(site=_Site, bill=Bill, person=PersonState, before=Accumulators, after=Accumulators,
                   split=Split, settlement=Settlement)
    def _settle(self, command: SettleCommand, batch: _Batch) -> Settlement:
        bill = command.bill
        fingerprint = digest(bill.fingerprint())
        if command.persist:
            earlier = self._earlier(bill.fixmedins_code, bill.msgid, fingerprint, batch)
            if earlier is not None:
                return earlier
        site = self._site(bill.fixmedins_code)
        institution = site.institution
        person = self._person(bill.psn_no, batch)
        self._check_person(bill, person)
        if bill.visit_type not in site.visits:
            self._refuse_visit(bill, institution)
        priced = self._priced_lines(bill, site)
        terms = self._terms(bill, institution)
        now = self._clock.now()
        priced, terms, plan = self._internet.prepare(bill, institution, priced, terms, now)
        setlym, year = self._month_of(now)
        dedc_used, fund_paid = person.years.get(year, (0, 0))
        before = Accumulators(dedc_used, fund_paid, person.acct_balc_fen)
        split = split_bill(priced, terms, before, bill.acct_used_flag, bill.delivery_fee_fen)
        audit_flags = self._internet.after_split(plan, split)
        # Positional, in the fields' order (keywords cost a match per field):
        settlement = Settlement(
            # setl_id: taken only by a settlement that is stored, as late as no refusal can follow
            self._next_setl_id(batch) if command.persist else "",
            bill.msgid, bill.fixmedins_code, bill.psn_no, bill.insutype, bill.insuplc_admdvs,
            institution.admdvs,  # mdtrtarea_admvs
            CLR_TYPE_OF_VISIT[bill.visit_type], site.pay_loc_of(bill.insuplc_admdvs),
            _SETTLE, "",  # kind, orig_setl_id
            now, setlym, split, audit_flags,
            plan.payee_code or bill.fixmedins_code,  # payee_code: an agreement may make the host the payee
        )
        if not command.persist:
            return settlement
        after = accumulate(before, split)
        self._stage_person(batch, person, year, after)
        posted, setl_time_us = self._post(batch, settlement, fingerprint, payee_code=settlement.payee_code)
        self._internet.stage(plan, posted, setl_time_us)
        return posted

    def _earlier(self, code: str, msgid: str, fingerprint: str, batch: _Batch) -> Settlement | None:
        """The earlier answer to the same (institution, msgid), or a conflict."""
        found = batch.by_key.get((code, msgid)) or batch.found.get((code, msgid))
        if found is None and (code, msgid) not in batch.looked_up:
            stored = self._store.find_by_key(code, msgid)
            found = (stored[0], stored[1]) if stored else None
        if found is None:
            return None
        settlement, earlier_fingerprint = found
        if earlier_fingerprint != fingerprint:
            raise Refused(
                Reason.IDEMPOTENCY_CONFLICT,
                f"msgid {msgid!r} of {code} was already used for another request ({settlement.setl_id})",
                [FieldViolation("msgid", "already used with a different payload")],
                {"setl_id": settlement.setl_id},
            )
        return settlement

    def _site(self, code: str) -> _Site:
        """The institution as settling needs it, prepared at its first bill
        (the reference data is fixed for the processor's life; an unknown
        code is refused and nothing is kept)."""
        site = self._sites.get(code)
        if site is None:
            institution = self._reference.institutions.get(code)
            if institution is None:
                raise refused_field(Reason.UNKNOWN_INSTITUTION, "fixmedins_code", "unknown designated institution")
            site = self._sites[code] = _Site(
                institution, VISITS_OF_KIND[institution.kind],
                self._reference.province_catalogue.get(institution.province), self._reference.catalogue,
            )
        return site

    def _month_of(self, now: dt.datetime) -> tuple[str, int]:
        """(period, year) of now in China time, as period_of and year_of say.
        For a time with a fixed UTC offset (the system clock's: UTC) the
        month's bounds in that offset are kept, so that the settlements of
        one month compare two times instead of converting each to China
        time; such times compare as the instants they are. So do times in
        China time itself (a fixed clock's given without an offset): times
        of one zone compare by wall time, and the period is China's
        wall-time month. Any other zone (a DST zone orders by wall time)
        converts each time."""
        tz = now.tzinfo
        if type(tz) is not _FIXED_OFFSET and tz is not CHINA_TZ:
            return period_of(now), year_of(now)
        month = self._month
        if month is None or month[4] is not tz or not month[0] <= now < month[1]:
            setlym = period_of(now)
            start, end = period_bounds(setlym)
            month = self._month = (start.astimezone(tz), end.astimezone(tz), setlym, year_of(now), tz)
        return month[2], month[3]

    def _person(self, psn_no: str, batch: _Batch) -> PersonState:
        person = batch.write.persons.get(psn_no) or self._persons.get(psn_no)
        if person is None:
            person = self._store.load_persons({psn_no}).get(psn_no)
            if person is None:
                raise refused_field(Reason.UNKNOWN_PERSON, "psn_no", "no insured person with this number")
        return person

    @staticmethod
    @cython.locals(bill=Bill, person=PersonState)
    def _check_person(bill: Bill, person: PersonState) -> None:
        violations = []
        if person.insutype != bill.insutype:
            violations.append(FieldViolation("insutype", "does not match the person's insurance type"))
        if person.insuplc_admdvs != bill.insuplc_admdvs:
            violations.append(FieldViolation("insuplc_admdvs", "does not match the person's insurance place"))
        if violations:
            raise Refused(Reason.PERSON_MISMATCH, "the bill does not match the insured person", violations)

    @staticmethod
    def _refuse_visit(bill: Bill, institution: Institution) -> None:
        raise refused_field(
            Reason.VISIT_NOT_ALLOWED, "visit_type",
            f"a {institution.kind.value} cannot settle a {bill.visit_type.name.lower()} visit",
        )

    @staticmethod
    @cython.locals(bill=Bill, site=_Site, line=FeeLine)
    def _priced_lines(bill: Bill, site: _Site) -> list[tuple[FeeLine, CatalogueItem]]:
        """Each line with the treatment province's catalogue entry (ReferenceData.item)."""
        priced = []
        violations = []
        overrides, catalogue = site.catalogues()
        for i, line in enumerate(bill.fee_lines):
            item = None if overrides is None else overrides.get(line.hilist_code)
            if item is None:
                item = catalogue.get(line.hilist_code)
            if item is None:
                violations.append(FieldViolation(f"fee_lines[{i}].hilist_code", "not in the treatment place's catalogue"))
            else:
                priced.append((line, item))
        if violations:
            raise Refused(Reason.UNKNOWN_ITEM, "item(s) not in the catalogue", violations)
        return priced

    def _terms(self, bill: Bill, institution: Institution) -> SplitTerms:
        """The insurance place's policy for this visit (kept per policy and
        level: the reference data is fixed for the processor's life; a bill no
        policy covers is refused and nothing is kept)."""
        key = (bill.insuplc_admdvs, bill.insutype, bill.visit_type, institution.level)
        terms = self._split_terms.get(key)
        if terms is None:
            terms = self._split_terms[key] = self._policy_terms(bill, institution)
        return terms

    def _policy_terms(self, bill: Bill, institution: Institution) -> SplitTerms:
        policy = self._reference.policy(bill.insuplc_admdvs, bill.insutype)
        ratio_bp = None
        if policy is not None:
            ratio_bp = policy.ratio_bp(RATIO_TABLE_OF_VISIT[bill.visit_type], institution.level)
        if policy is None or ratio_bp is None:
            raise Refused(
                Reason.NO_POLICY,
                f"no policy of {bill.insuplc_admdvs} for insutype {bill.insutype} covers this visit",
            )
        return SplitTerms(policy.deductible_fen, policy.annual_fund_cap_fen, ratio_bp, policy.acct_allowed)

    # ---- reverse -----------------------------------------------------
    def _reverse(self, command: ReverseCommand, batch: _Batch) -> Settlement:
        fingerprint = digest(command.fingerprint())
        earlier = self._earlier(command.fixmedins_code, command.msgid, fingerprint, batch)
        if earlier is not None:
            return earlier
        original = self._original(command, batch)
        self._internet.check_reversal(original)  # before anything is staged: a refusal writes nothing
        person = self._person(original.psn_no, batch)
        year = year_of(original.setl_time)
        dedc_used, fund_paid = person.years.get(year, (0, 0))
        before = Accumulators(dedc_used, fund_paid, person.acct_balc_fen)
        negated = original.split.negated(balc_fen=person.acct_balc_fen + original.split.acct_pay_fen)
        after = accumulate(before, negated)
        now = self._clock.now()
        payee = self._payee_of(original.setl_id, batch)
        reversal = Settlement(
            setl_id=self._next_setl_id(batch),
            msgid=command.msgid,
            fixmedins_code=command.fixmedins_code,
            psn_no=original.psn_no,
            insutype=original.insutype,
            insuplc_admdvs=original.insuplc_admdvs,
            mdtrtarea_admvs=original.mdtrtarea_admvs,
            clr_type=original.clr_type,
            pay_loc=original.pay_loc,
            kind=_REVERSAL,
            orig_setl_id=original.setl_id,
            setl_time=now,
            # a reversal belongs to the period in which it happens
            setlym=period_of(now),
            split=negated,
            payee_code=payee,
        )
        self._stage_person(batch, person, year, after)
        settled, _ = self._post(batch, reversal, fingerprint, payee_code=payee)
        self._internet.reverse(original, settled)
        batch.reversed[original.setl_id] = settled.setl_id
        return settled

    def _original(self, command: ReverseCommand, batch: _Batch) -> Settlement:
        found = batch.by_setl_id.get(command.setl_id)
        if found is None:
            stored = self._store.find_by_setl_id(command.setl_id)
            found = (stored[0], stored[2]) if stored else None
        # Another institution's settlement is reported as unknown: no probing.
        if found is None or found[0].fixmedins_code != command.fixmedins_code:
            raise refused_field(Reason.SETTLEMENT_NOT_FOUND, "setl_id", "no settlement with this id for this institution")
        original = found[0]
        if original.kind == SettlementKind.REVERSAL:
            raise refused_field(Reason.REVERSAL_OF_REVERSAL, "setl_id", "is a reversal; a reversal cannot be reversed")
        reversal_id = batch.reversed.get(original.setl_id) or self._store.reversal_of(original.setl_id)
        if reversal_id:
            raise Refused(
                Reason.ALREADY_REVERSED,
                f"settlement {original.setl_id} was already reversed by {reversal_id}",
                [FieldViolation("setl_id", "already reversed")],
                {"reversal_setl_id": reversal_id},
            )
        return original

    def _payee_of(self, setl_id: str, batch: _Batch) -> str:
        found = batch.by_setl_id.get(setl_id)
        if found is not None:
            return found[1]
        stored = self._store.find_by_setl_id(setl_id)
        assert stored is not None
        return stored[2]

    # ---- staging -----------------------------------------------------
    @staticmethod
    @cython.locals(batch=_Batch, person=PersonState, after=Accumulators)
    def _stage_person(batch: _Batch, person: PersonState, year: int, after: Accumulators) -> None:
        years = dict(person.years)
        years[year] = (after.dedc_used_fen, after.fund_paid_fen)
        batch.write.persons[person.psn_no] = PersonState(
            person.psn_no, person.insutype, person.insuplc_admdvs, after.acct_balc_fen, years
        )
        batch.write.touched_years.add((person.psn_no, year))

    @staticmethod
    @cython.locals(batch=_Batch)
    def _next_setl_id(batch: _Batch) -> str:
        batch.setl_no += 1
        return "S" + str(batch.setl_no).zfill(12)  # f"S{setl_no:012d}" (positive), without the format spec's parse

    @cython.locals(split=Split)
    def _post(self, batch: _Batch, settlement: Settlement, fingerprint: str, payee_code: str) -> tuple[Settlement, int]:
        """settlement: with the id _next_setl_id gave it. Returns it and its setl_time in epoch microseconds."""
        split = settlement.split
        lines = posting_lines(
            settlement.insuplc_admdvs, settlement.mdtrtarea_admvs, payee_code, split.hifp_pay_fen, split.acct_pay_fen,
        )
        entry_no = batch.entry_no = batch.entry_no + 1
        setlym = settlement.setlym
        created_us = to_us(settlement.setl_time)  # once: the entry, the row and the stage's rows
        kind = "settle" if settlement.kind == _SETTLE else "reverse"
        entry = entry_hash_of_lines(batch.last_hash, entry_no, settlement.setl_id, kind, setlym, created_us, lines)
        write = batch.write
        write.settlements.append(settlement_row(settlement, fingerprint, payee_code, created_us))
        write.entries.append((entry_no, settlement.setl_id, kind, setlym, created_us, batch.last_hash, entry))
        write.postings.extend([(entry_no, setlym, book, account, amount) for book, account, amount in lines])
        batch.last_hash = entry
        batch.by_key[(settlement.fixmedins_code, settlement.msgid)] = (settlement, fingerprint)
        batch.by_setl_id[settlement.setl_id] = (settlement, payee_code)
        return settlement, created_us

    def _remember(self, persons: dict[str, PersonState]) -> None:
        """Caches the committed state of the batch's persons (bounded)."""
        self._persons.update(persons)
        while len(self._persons) > PERSON_CACHE_SIZE:
            del self._persons[next(iter(self._persons))]
