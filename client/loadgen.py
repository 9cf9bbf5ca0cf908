"""The load generator's engine: asyncio clients with N calls in flight
against a running server, the settlement path and the no-op echo baseline
measured the same way, latency in an HdrHistogram, errors by status code.

Requests are serialized by the generator and responses read as bytes unless
the generator needs a field (a reversal needs the setl_id; a stream item its
status), so the client spends as little CPU per call as it can: on a shared
2-core machine the client and the server compete for the same cores, and the
echo baseline pays exactly the same client cost.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import math
import os
import random
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import aiohttp
import grpc
from hdrh.histogram import HdrHistogram

from medsettle.client.national import ENDPOINT, settle_envelope

from medsettle.v1 import echo_pb2 as echo_pb
from medsettle.v1 import settlement_pb2 as pb

SETTLE = "/medsettle.v1.SettlementService/Settle"
REVERSE = "/medsettle.v1.SettlementService/Reverse"
SETTLE_STREAM = "/medsettle.v1.SettlementService/SettleStream"
SETTLE_BATCH_STREAM = "/medsettle.v1.SettlementService/SettleBatchStream"
MAX_BATCH_BILLS = 256
MODES = ("unary", "stream", "batch", "http")
# The HTTP mode (2207 over the JSON gateway) is measured against the gRPC
# unary echo: the baseline is what one gRPC call costs, whatever the transport.
BASELINE_MODE = {"http": "unary"}
ECHO = "/medsettle.v1.EchoService/Echo"
ECHO_STREAM = "/medsettle.v1.EchoService/EchoStream"

LATENCY_MAX_US = 120_000_000  # the histogram's range: 1 µs .. 120 s, 3 significant digits
CALL_TIMEOUT_S = 60.0
MAX_CONCURRENCY = 10_000
MAX_LINES_PER_BILL = 500
MAX_PERSONS = 10_000_000  # 13 digits of the synthetic psn_no

# Hospitals of the shipped sample data, with the pooling region they are in.
# Outpatient visits at hospitals: every one of them may settle them.
HOSPITALS = {
    "H44010100001": "440100",
    "H44010100002": "440100",
    "H44030100001": "440300",
    "H44060100001": "440600",
    "H13010100001": "130100",
    "H13020100001": "130200",
    "H31010100001": "310100",
}
REGIONS = sorted(set(HOSPITALS.values()))
# (item, unit price in fen): class A, B and C items within every price cap.
ITEMS = (
    ("S0001", 2500), ("XA0101", 1800), ("XB0201", 3500), ("XC0401", 1200),
    ("XA0102", 1500), ("S0003", 5200), ("XB0202", 900), ("S0002", 12000),
)


# ---- reference data for load ---------------------------------------------
def synthetic_psn_no(admdvs: str, index: int) -> str:
    """Region + "9" + 13 digits: never one of the sample's persons (region + "0...")."""
    return f"{admdvs}9{index:013d}"


def synthetic_reference(base: Mapping[str, Any], persons: int) -> dict[str, Any]:
    """The base document plus `persons` insured persons spread over the
    sample's regions (employee and resident insurance, with balances)."""
    if not 1 <= persons <= MAX_PERSONS:
        raise ValueError(f"persons must be 1..{MAX_PERSONS:,}, got {persons}")
    doc = json.loads(json.dumps(base))
    for i in range(persons):
        admdvs = REGIONS[i % len(REGIONS)]
        employee = (i // len(REGIONS)) % 2 == 0
        doc["persons"].append({
            "psn_no": synthetic_psn_no(admdvs, i // len(REGIONS)),
            "name": f"Load Person {i}",
            "insutype": 310 if employee else 390,
            "insuplc_admdvs": admdvs,
            "acct_balc_fen": 2_000_000 if employee else 0,
        })
    return doc


# ---- the bill mix ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BillMix:
    persons: int = 10_000  # synthetic persons the bills are drawn from
    cross_region_share: float = 0.25  # insured in another region than treated
    lines_per_bill: int = 3
    reversal_share: float = 0.0  # after a settlement, reverse it (unary only)
    duplicate_share: float = 0.0  # re-send the previous request, same msgid

    def __post_init__(self) -> None:
        for name in ("cross_region_share", "reversal_share", "duplicate_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be 0..1, got {getattr(self, name)}")
        if not 1 <= self.lines_per_bill <= MAX_LINES_PER_BILL:
            raise ValueError(f"lines_per_bill must be 1..{MAX_LINES_PER_BILL}, got {self.lines_per_bill}")
        if self.persons < len(REGIONS):
            raise ValueError(f"persons must be at least {len(REGIONS)}, got {self.persons}")


class BillFactory:
    """Well-formed bills of the mix, each with a msgid unique to this run."""

    def __init__(self, mix: BillMix, seed: int | None = None, run_tag: str | None = None) -> None:
        self.mix = mix
        self._random = random.Random(seed)
        self._tag = run_tag or secrets.token_hex(3)  # msgids of two runs on one database never collide
        self._sequence = itertools.count(1)
        self._per_region = mix.persons // len(REGIONS)
        self._lines = [
            pb.FeeLine(feedetl_sn=str(i + 1), hilist_code=ITEMS[i % len(ITEMS)][0], cnt=1 + i % 3, pric_fen=ITEMS[i % len(ITEMS)][1])
            for i in range(mix.lines_per_bill)
        ]

    def next_msgid(self, prefix: str = "L") -> str:
        return f"{prefix}{self._tag}{next(self._sequence):012d}"

    def bill(self, fixmedins_code: str | None = None) -> pb.SettleRequest:
        rnd = self._random
        code = fixmedins_code or rnd.choice(tuple(HOSPITALS))
        treated_in = HOSPITALS[code]
        insured_in = treated_in
        if rnd.random() < self.mix.cross_region_share:
            insured_in = rnd.choice([r for r in REGIONS if r != treated_in])
        index = rnd.randrange(self._per_region)
        employee = index % 2 == 0
        return pb.SettleRequest(
            msgid=self.next_msgid(),
            fixmedins_code=code,
            psn_no=synthetic_psn_no(insured_in, index),
            insutype=310 if employee else 390,  # type: ignore[arg-type]
            insuplc_admdvs=insured_in,
            visit_type=pb.VISIT_TYPE_OUTPATIENT,
            acct_used_flag=employee,
            fee_lines=self._lines,
        )

    def chance(self, share: float) -> bool:
        return share > 0 and self._random.random() < share


# ---- measuring -------------------------------------------------------------
@dataclass
class Tally:
    """What one phase measured: completions, latency, errors."""

    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, LATENCY_MAX_US, 3))
    ok: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_ns: int = 0
    last_ns: int = 0

    def record(self, kind: str, started_ns: int, error: str | None = None) -> None:
        now = time.perf_counter_ns()
        # Clamped to the histogram's range: a value beyond it would be dropped silently.
        self.histogram.record_value(min(LATENCY_MAX_US, max(1, (now - started_ns) // 1_000)))
        self.last_ns = now
        if error is None:
            self.ok += 1
            self.by_kind[kind] += 1
        else:
            self.errors[error] += 1

    def summary(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """elapsed_s: the window the rate is over (default: first to last call)."""
        if elapsed_s is None:
            elapsed_s = max(1e-9, (self.last_ns - self.first_ns) / 1e9)
        h = self.histogram
        ms = lambda us: round(us / 1000, 3)  # noqa: E731
        return {
            "calls_ok": self.ok,
            "calls_failed": sum(self.errors.values()),
            "elapsed_s": round(elapsed_s, 3),
            "calls_per_s": round(self.ok / elapsed_s, 1),
            "by_kind": dict(self.by_kind),
            "errors": dict(self.errors),
            "latency_ms": {
                "p50": ms(h.get_value_at_percentile(50)),
                "p90": ms(h.get_value_at_percentile(90)),
                "p99": ms(h.get_value_at_percentile(99)),
                "max": ms(h.get_max_value()),
            },
        }


def merged(tallies: Sequence[Tally]) -> Tally:
    """One tally of several (the targets of a phase): every call, the widest window."""
    total = Tally(first_ns=min(t.first_ns for t in tallies), last_ns=max(t.last_ns for t in tallies))
    for tally in tallies:
        if tally.histogram.get_total_count():  # adding an empty one would set the minimum to 0
            total.histogram.add(tally.histogram)
        total.ok += tally.ok
        total.by_kind.update(tally.by_kind)
        total.errors.update(tally.errors)
    return total


class PhaseTallies:
    """Per target: the calls measured, and those made during the warm-up."""

    def __init__(self, targets: int) -> None:
        self.measured = [Tally() for _ in range(targets)]
        self.warmup = [Tally() for _ in range(targets)]
        self.measuring = False

    def open(self) -> None:
        """From now on calls are measured; the window starts now for every target."""
        now = time.perf_counter_ns()
        for tally in self.measured:
            tally.first_ns = now
        self.measuring = True

    def sink(self, target: int) -> Tally:
        return (self.measured if self.measuring else self.warmup)[target]

    def calls_with_warmup(self) -> int:
        return sum(t.ok + sum(t.errors.values()) for t in (*self.measured, *self.warmup))


@dataclass(frozen=True, slots=True)
class Phase:
    service: str  # "settle" or "echo"
    mode: str  # "unary", "stream", "batch" (SettleBatchStream; its echo baseline is the item stream) or "http" (the gateway)
    concurrency: int  # calls (unary) or stream items (stream) in flight
    duration_s: float | None = 10.0
    count: int | None = None  # stop after this many calls instead
    streams: int = 4  # stream mode: concurrent streams sharing the in-flight window
    warmup_s: float = 1.0  # measured from here on; calls before are not counted
    batch: int = 64  # batch mode: bills per SettleBatchStream message

    def __post_init__(self) -> None:
        if self.service not in ("settle", "echo") or self.mode not in MODES or (self.service, self.mode) == ("echo", "http"):
            raise ValueError(f"unknown phase {self.service}/{self.mode}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY}, got {self.concurrency}")
        if (self.duration_s is None) == (self.count is None):
            raise ValueError("give exactly one of duration_s and count")
        if self.mode in ("stream", "batch") and not 1 <= self.streams <= self.concurrency:
            raise ValueError(f"streams must be 1..concurrency, got {self.streams}")
        if not 1 <= self.batch <= MAX_BATCH_BILLS:
            raise ValueError(f"batch must be 1..{MAX_BATCH_BILLS}, got {self.batch}")
        if self.mode == "batch" and self.batch > self.concurrency // self.streams:
            raise ValueError(f"batch must fit each stream's window ({self.concurrency // self.streams} items)")


class Credentials:
    """The bearer token for each institution, or one token for all, or none."""

    def __init__(self, tokens: Mapping[str, str] | None = None, token: str | None = None) -> None:
        self._metadata = {code: (("authorization", f"Bearer {t}"),) for code, t in (tokens or {}).items()}
        self._default = (("authorization", f"Bearer {token}"),) if token else None
        self._headers = {code: {"Authorization": value, "Content-Type": "application/json"}
                         for code, ((_, value),) in self._metadata.items()}
        self._default_headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}

    def metadata(self, code: str) -> tuple[tuple[str, str], ...] | None:
        return self._metadata.get(code, self._default)

    def headers(self, code: str) -> dict[str, str]:
        """The same credential as HTTP headers (the JSON gateway)."""
        return self._headers.get(code, self._default_headers)


def _status_name(error: grpc.RpcError) -> str:
    code = error.code() if hasattr(error, "code") else None
    return code.name if code is not None else "UNKNOWN"


class _Budget:
    """When a phase stops: a duration after its measurement opened, or after
    a number of calls. The deadline is set when the measurement opens, not
    when the phase starts: on a loaded machine the warm-up may end late, and
    the measured window must still be the whole duration."""

    def __init__(self, phase: Phase) -> None:
        self._duration_s = phase.duration_s
        self._deadline = None if phase.duration_s is None else math.inf  # until the measurement opens
        self._left = phase.count

    def measuring_from(self, now_s: float) -> None:
        """The measurement opened at monotonic time now_s."""
        if self._duration_s is not None:
            self._deadline = now_s + self._duration_s

    def take(self) -> bool:
        if self._deadline is not None:
            return time.monotonic() < self._deadline
        if self._left is None or self._left <= 0:
            return False
        self._left -= 1
        return True


@dataclass(frozen=True, slots=True)
class Target:
    """One server a phase drives: its address, a channel to it, the
    credentials its ledger knows (servers sharing one database share them)."""

    name: str
    channel: grpc.aio.Channel
    credentials: Credentials
    http_base: str | None = None  # its JSON gateway (http://HOST:PORT), for the http mode


def round_robin(count: int) -> Callable[[], int]:
    """The index of the target of the next call: 0, 1, .., count-1, 0, .."""
    return itertools.cycle(range(count)).__next__


async def run_phase(targets: Sequence[Target], phase: Phase, bills: BillFactory) -> dict[str, Any]:
    """Runs one phase to its end against the targets and returns its summary:
    the total, and each target's share (`by_target`) over the same window.
    Unary calls go to the targets in turn, and so do a retry of the previous
    request and a reversal (as through a load balancer: any server may get
    them); stream i goes to target i mod len(targets), all its items with it."""
    names = [t.name for t in targets]
    if not targets or len(set(names)) != len(names):
        raise ValueError(f"targets must be one or more distinct servers, got {names}")
    if phase.mode in ("stream", "batch") and phase.streams < len(targets):
        raise ValueError(f"streams must be at least the number of targets ({len(targets)}): a stream goes to one")
    tallies = PhaseTallies(len(targets))
    budget = _Budget(phase)
    # A count run measures every call; a timed run starts counting after the warm-up.
    def open_measurement_now() -> None:
        tallies.open()
        budget.measuring_from(time.monotonic())

    if phase.count is not None or phase.warmup_s <= 0:
        open_measurement_now()

    async def open_measurement() -> None:
        await asyncio.sleep(phase.warmup_s)
        open_measurement_now()

    opener = None if tallies.measuring else asyncio.create_task(open_measurement())
    session = None
    if phase.mode == "http":
        if any(t.http_base is None for t in targets):
            raise ValueError("an http phase needs each target's gateway address")
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=phase.concurrency),
                                        timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S))
        next_target = round_robin(len(targets))
        workers = [_http_worker(targets, session, bills, budget, tallies.sink, next_target)
                   for _ in range(phase.concurrency)]
    elif phase.mode == "unary":
        next_target = round_robin(len(targets))
        workers = [_unary_worker(targets, phase.service, bills, budget, tallies.sink, next_target)
                   for _ in range(phase.concurrency)]
    else:
        codes = list(HOSPITALS)
        windows = _split(phase.concurrency, phase.streams)
        workers = [
            _stream_worker(targets[i % len(targets)], phase.service, bills, budget,
                           functools.partial(tallies.sink, i % len(targets)), codes[i % len(codes)], window,
                           phase.batch if phase.mode == "batch" and phase.service == "settle" else 0)
            for i, window in enumerate(windows)
        ]
    try:
        await asyncio.gather(*workers)
    finally:
        if session is not None:
            await session.close()
    if opener is not None:
        opener.cancel()
    total = merged(tallies.measured)
    if total.last_ns == 0:
        total.last_ns = time.perf_counter_ns()
    summary = total.summary()
    return {"service": phase.service, "mode": phase.mode, "concurrency": phase.concurrency,
            **({"streams": phase.streams} if phase.mode in ("stream", "batch") else {}),
            **({"batch": phase.batch} if phase.mode == "batch" else {}), **summary,
            "by_target": {name: tally.summary(summary["elapsed_s"]) for name, tally in zip(names, tallies.measured)},
            "calls_with_warmup": tallies.calls_with_warmup()}


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def _unary_worker(
    targets: Sequence[Target], service: str, bills: BillFactory, budget: _Budget,
    sink: Callable[[int], Tally], next_target: Callable[[], int],
) -> None:
    # Raw bytes in and out: the generator parses a response only when it needs a field.
    settles = [t.channel.unary_unary(SETTLE if service == "settle" else ECHO) for t in targets]
    reverses = [t.channel.unary_unary(REVERSE) for t in targets]
    mix = bills.mix
    previous: tuple[bytes, str] | None = None  # the last request sent and its institution
    while budget.take():
        index = next_target()
        if previous is not None and bills.chance(mix.duplicate_share):
            kind, (payload, code) = "duplicate", previous
        else:
            bill = bills.bill()
            code = bill.fixmedins_code
            payload = (bill if service == "settle" else echo_pb.EchoRequest(request=bill)).SerializeToString()
            kind = "settle"
            previous = (payload, code)
        started = time.perf_counter_ns()
        try:
            answer = await settles[index](payload, metadata=targets[index].credentials.metadata(code),
                                          timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            sink(index).record(kind, started, _status_name(error))
            continue
        sink(index).record(kind, started)
        if service == "settle" and kind == "settle" and bills.chance(mix.reversal_share) and budget.take():
            result = pb.SettleResponse.FromString(answer).result
            request = pb.ReverseRequest(msgid=bills.next_msgid("R"), fixmedins_code=result.fixmedins_code, setl_id=result.setl_id)
            index = next_target()
            started = time.perf_counter_ns()
            try:
                await reverses[index](request.SerializeToString(), metadata=targets[index].credentials.metadata(code),
                                      timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                sink(index).record("reverse", started, _status_name(error))
            else:
                sink(index).record("reverse", started)


async def _http_worker(
    targets: Sequence[Target], session: aiohttp.ClientSession, bills: BillFactory, budget: _Budget,
    sink: Callable[[int], Tally], next_target: Callable[[], int],
) -> None:
    """2207 over the JSON gateway, one call in flight: the envelope built and
    serialized per call (as an HIS would), the answer read but not parsed
    (200 is infcode 0). An error is counted by HTTP status (HTTP_409, ...)."""
    urls = [f"{t.http_base}{ENDPOINT}" for t in targets]
    previous: tuple[bytes, str] | None = None  # the last request sent and its institution
    while budget.take():
        index = next_target()
        if previous is not None and bills.chance(bills.mix.duplicate_share):
            kind, (body, code) = "duplicate", previous
        else:
            bill = bills.bill()
            body, code = json.dumps(settle_envelope(bill)).encode(), bill.fixmedins_code
            kind, previous = "settle", (body, code)
        started = time.perf_counter_ns()
        try:
            async with session.post(urls[index], data=body, headers=targets[index].credentials.headers(code)) as answer:
                await answer.read()
                status = answer.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            sink(index).record(kind, started, type(error).__name__)
            continue
        sink(index).record(kind, started, None if status == 200 else f"HTTP_{status}")


async def _stream_worker(
    target: Target, service: str, bills: BillFactory, budget: _Budget, sink: Callable[[], Tally],
    code: str, window: int, batch: int = 0,
) -> None:
    """One stream for one institution (a credential acts for its own code),
    keeping `window` items in flight; the answers come back in order.
    batch > 0: SettleBatchStream, `batch` bills per message, each bill's
    latency from its message's send to its own answer."""
    method, encode, codes_of = _stream_kind(service, batch)
    call = target.channel.stream_stream(method)(metadata=target.credentials.metadata(code), timeout=None)
    room = asyncio.Semaphore(window)
    sent: deque[tuple[int, str]] = deque()

    async def write_all() -> None:
        previous: pb.SettleRequest | None = None  # a duplicate re-sends the bill before it
        try:
            while True:
                kinds: list[str] = []
                message: list[pb.SettleRequest] = []
                while len(kinds) < max(1, batch) and budget.take():
                    await room.acquire()
                    if previous is not None and bills.chance(bills.mix.duplicate_share):
                        kinds.append("duplicate")
                    else:
                        previous = bills.bill(code)
                        kinds.append("settle")
                    message.append(previous)
                if not kinds:
                    break
                started = time.perf_counter_ns()
                sent.extend((started, kind) for kind in kinds)
                await call.write(encode(message))
        finally:
            await call.done_writing()

    writer = asyncio.create_task(write_all())
    try:
        while True:
            answer = await call.read()
            if answer is grpc.aio.EOF:
                break
            for status_code in codes_of(answer):
                started, kind = sent.popleft()
                sink().record(kind, started, STATUS_NAMES.get(status_code, f"CODE_{status_code}") if status_code else None)
                room.release()
        await writer
    except grpc.RpcError as error:
        writer.cancel()
        for started, kind in sent:
            sink().record(kind, started, _status_name(error))


def _stream_kind(service: str, batch: int) -> tuple[str, Callable[[list[pb.SettleRequest]], bytes], Callable[[bytes], Any]]:
    """(method, message encoder, answer -> status codes) of a stream phase.
    Echo answers are not parsed: a no-op call always succeeds."""
    if service == "echo":
        return ECHO_STREAM, lambda m: echo_pb.EchoStreamRequest(request=m[0]).SerializeToString(), lambda _: (0,)
    if batch:
        return (SETTLE_BATCH_STREAM, lambda m: pb.SettleBatchStreamRequest(requests=m).SerializeToString(),
                lambda a: [item.status.code for item in pb.SettleBatchStreamResponse.FromString(a).items])
    return (SETTLE_STREAM, lambda m: pb.SettleStreamRequest(request=m[0]).SerializeToString(),
            lambda a: (pb.SettleStreamResponse.FromString(a).status.code,))


STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


# ---- server memory -----------------------------------------------------------
def rss_kib(pid: int) -> int | None:
    """The resident set size of a process (VmRSS), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # The command name (field 2) may hold spaces: count from its closing parenthesis.
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """pid and its live descendants (a server run with --writer-process has a
    writer child), from /proc/PID/task/TID/children."""
    tree, index = [pid], 0
    while index < len(tree):
        current = tree[index]
        index += 1
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    tree.extend(int(child) for child in children.read().split())
        except (OSError, ValueError):
            continue
    return tree


def tree_cpu_s(pid: int) -> float | None:
    """cpu_s of a process and its live descendants, or None if it is gone."""
    spent = [cpu_s(p) for p in process_tree(pid)]
    return None if spent[0] is None else sum(s for s in spent if s is not None)


def trees_cpu_s(pids: Sequence[int]) -> float | None:
    """tree_cpu_s summed over processes, or None if one of them is gone."""
    spent = [tree_cpu_s(pid) for pid in pids]
    return None if not spent or any(s is None for s in spent) else sum(spent)  # type: ignore[arg-type]


def tree_rss_kib(pid: int) -> int | None:
    """rss_kib of a process and its live descendants, or None if it is gone."""
    sizes = [rss_kib(p) for p in process_tree(pid)]
    return None if sizes[0] is None else sum(k for k in sizes if k is not None)


class RssSampler:
    """Samples the RSS of processes (and their children), summed, every
    interval_s while the load runs."""

    def __init__(self, pids: Sequence[int], interval_s: float = 1.0) -> None:
        self.pids = tuple(pids)
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    async def _run(self) -> None:
        while True:
            sizes = [tree_rss_kib(pid) for pid in self.pids]
            if all(kib is not None for kib in sizes):
                kib = sum(sizes)  # type: ignore[arg-type]
                self.samples.append((round(time.monotonic() - self._started, 2), kib))
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def summary(self) -> dict[str, Any]:
        return rss_summary(self.samples)


def rss_summary(samples: Sequence[tuple[float, int]]) -> dict[str, Any]:
    """First, last and peak RSS in MiB, and the growth over the second half
    of the run (after the caches and the allocator have warmed up)."""
    if not samples:
        return {"samples": 0}
    values = [kib for _, kib in samples]
    half = samples[len(samples) // 2]
    mib = lambda kib: round(kib / 1024, 1)  # noqa: E731
    return {
        "samples": len(samples),
        "first_mib": mib(values[0]),
        "last_mib": mib(values[-1]),
        "peak_mib": mib(max(values)),
        "second_half_growth_mib": mib(values[-1] - half[1]),
        "series_mib": [(t, mib(kib)) for t, kib in samples],
    }


def iter_phases(modes: Sequence[str], with_echo: bool, **common: Any) -> Iterator[Phase]:
    """Per mode: the echo baseline first, then the settlements (http has
    none of its own: its baseline is the gRPC unary echo of the same run)."""
    for mode in modes:
        if with_echo and mode != "http":
            yield Phase("echo", mode, **common)
        yield Phase("settle", mode, **common)


def ratios(phases: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Settlements/s over echo calls/s, per mode measured with both (http:
    over the gRPC unary echo)."""
    rate = {(p["service"], p["mode"]): p["calls_per_s"] for p in phases}
    return {
        mode: round(rate[("settle", mode)] / rate[("echo", BASELINE_MODE.get(mode, mode))], 3)
        for (service, mode) in rate
        if service == "settle" and rate.get(("echo", BASELINE_MODE.get(mode, mode)))
    }


def http_to_grpc(phases: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Settlements over the gateway against gRPC unary in the same run:
    the ratio of settlements/s and of p99 latency (empty without both)."""
    settle = {p["mode"]: p for p in phases if p["service"] == "settle"}
    if "http" not in settle or "unary" not in settle or not settle["unary"]["calls_per_s"]:
        return {}
    http, unary = settle["http"], settle["unary"]
    return {"calls_per_s": round(http["calls_per_s"] / unary["calls_per_s"], 3),
            "p99": round(http["latency_ms"]["p99"] / max(unary["latency_ms"]["p99"], 1e-9), 3)}
