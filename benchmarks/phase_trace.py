"""Where a write call's time goes, from the files a server writes with
MEDSETTLE_PHASE_TRACE set (ledger/storage/phase_trace.py):

    MEDSETTLE_PHASE_TRACE=var/trace medsettle load --mode unary
    python benchmarks/phase_trace.py var/trace

Prints, per call (each batch's figures weighted by its writes): the
handler's time, the wait in the queue for the running batch, the pipe to
the writer process, the settling, the commit, the WAL's fsync and the
answers' way back, and the handler's rest; the batch sizes; the fsyncs;
the writer process's CPU."""

from __future__ import annotations

import sys
from pathlib import Path


def read_rows(directory: Path, part: str) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    for path in sorted(directory.glob(f"{part}-*.tsv")):
        columns: list[str] = []
        for line in path.read_text().splitlines():
            cells = line.split("\t")
            if not cells[0][:1].isdigit() and cells[0][:1] != "-":  # a header
                columns = cells
                continue
            rows.append(dict(zip(columns, map(float, cells))))
    return rows


def quantile(pairs: list[tuple[float, float]], q: float) -> float:
    """The q quantile of values given as (value, weight)."""
    pairs = sorted(pairs)
    total = sum(w for _, w in pairs)
    seen = 0.0
    for value, weight in pairs:
        seen += weight
        if seen >= q * total:
            return value
    return pairs[-1][0] if pairs else 0.0


def line(name: str, pairs: list[tuple[float, float]]) -> str:
    total = sum(w for _, w in pairs) or 1.0
    mean = sum(v * w for v, w in pairs) / total
    return (f"  {name:<44} mean {1e3 * mean:7.3f}  p50 {1e3 * quantile(pairs, 0.5):7.3f}"
            f"  p99 {1e3 * quantile(pairs, 0.99):7.3f} ms")


def held_while_idle(batches: list[dict[str, float]], writer: list[dict[str, float]]) -> tuple[float, float, float]:
    """Seconds the writer process had no batch between two, and of those the
    seconds in which the next batch's first write already waited in the
    gRPC process: held until every batch sent was answered (the next went
    with none in flight), or sent beside batches awaiting their fsync once
    enough writes waited (or an older batch was answered). Rows joined by
    position: batch k of the gRPC process is batch k of the writer."""
    idle = held_for_answers = held_for_more = 0.0
    for k in range(1, min(len(batches), len(writer))):
        idle_from, idle_to = writer[k - 1]["written"], writer[k]["started"]
        if idle_to <= idle_from:
            continue
        idle += idle_to - idle_from
        held = min(idle_to, batches[k]["sent"]) - max(idle_from, batches[k]["first_submit"])
        if held > 0:
            if batches[k]["in_flight"] == 0:
                held_for_answers += held
            else:
                held_for_more += held
    return idle, held_for_answers, held_for_more


def main(directory: Path) -> None:
    calls = read_rows(directory, "calls")
    batches = read_rows(directory, "batches")
    writer_rows = read_rows(directory, "writer")
    cpu = [r for r in writer_rows if r["read"] < 0]
    writer = [r for r in writer_rows if r["read"] >= 0]
    print(f"{len(calls)} calls, {len(batches)} batches sent, {len(writer)} run by the writer process")
    if calls:
        print("the handler (Settle, Reverse, PreSettle):")
        print(line("entered -> answer back from the writer", [(c["resumed"] - c["entered"], 1) for c in calls]))
        print(line("answer back -> returned", [(c["returned"] - c["resumed"], 1) for c in calls]))
    if batches:
        sizes = [(b["n"], b["n"]) for b in batches]
        print(f"batches: mean {sum(b['n'] for b in batches) / len(batches):.2f} writes,"
              f" per write p50 {quantile(sizes, 0.5):.0f} p99 {quantile(sizes, 0.99):.0f};"
              f" sent with another in the writer: {sum(b['in_flight'] > 0 for b in batches) / len(batches):.0%}")
        print("per write, in the gRPC process:")
        print(line("queued (submit -> batch sent), mean of batch", [(b["sent"] - b["mean_submit"], b["n"]) for b in batches]))
        print(line("  first of batch queued", [(b["sent"] - b["first_submit"], 1) for b in batches]))
        print(line("batch sent -> answers read", [(b["answered"] - b["sent"], b["n"]) for b in batches]))
    if writer and len(writer) == len(batches):
        print("per write, the batch in the writer process:")
        phases = [
            ("sent -> read by the writer (after the one before)", lambda b, w: w["read"] - b["sent"]),
            ("read -> begun (waited for the previous batch)", lambda b, w: w["started"] - w["read"]),
            ("begun -> commit (parse, settle, insert)", lambda b, w: w["commit_start"] - w["started"]),
            ("commit (SQLite's part; the fsync follows)", lambda b, w: w["committed"] - w["commit_start"]),
            ("committed -> said settled", lambda b, w: w["written"] - w["committed"]),
            ("said settled -> answers read (the fsync)", lambda b, w: b["answered"] - w["written"]),
        ]
        for name, phase in phases:
            print(line(name, [(phase(b, w), b["n"]) for b, w in zip(batches, writer)]))
        busy = sum(w["written"] - max(w["read"], w["started"]) for w in writer)
        span = writer[-1]["written"] - writer[0]["read"]
        print(f"  the writer had a batch for {busy / span:.0%} of {span:.1f} s;"
              f" commits took {sum(w['committed'] - w['commit_start'] for w in writer) / span:.0%} of it")
        idle, held_for_answers, held_for_more = held_while_idle(batches, writer)
        print(f"  the writer idle {idle / span:.0%} of the time; writes waited in the gRPC process meanwhile"
              f" {(held_for_answers + held_for_more) / span:.0%} (until every batch sent was answered:"
              f" {held_for_answers / span:.0%}; beside batches awaiting their fsync: {held_for_more / span:.0%})")
    elif writer:
        print(f"(the writer ran {len(writer)} batches against {len(batches)} sent: not joined)")
    syncs = read_rows(directory, "syncs")
    if syncs:
        took = [(s["synced"] - s["began"], 1) for s in syncs]
        print(f"{len(syncs)} fsyncs of the WAL, {sum(s['batches'] for s in syncs) / len(syncs):.2f} batches each:")
        print(line("fsync", took))
    for row in cpu:
        print(f"writer process CPU: main thread {row['started']:.2f} s, all threads {row['commit_start']:.2f} s"
              f" ({row['committed']:.2f} s in user space, {row['written']:.2f} s in the kernel)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
