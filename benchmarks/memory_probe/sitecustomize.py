"""A memory probe for a server under load, outside the product: with this
folder on PYTHONPATH and MEDSETTLE_MEMORY_PROBE=FOLDER in the environment of
`medsettle load` (or `serve`), the writer process (the `python -c` child)
appends a line of memory_figures.py's figures every
MEDSETTLE_MEMORY_PROBE_S seconds (default 15) to FOLDER/writer-PID.txt,
and with MEDSETTLE_MEMORY_PROBE_TRACE=FRAMES (tracemalloc, several times
slower; MEDSETTLE_PURE=1 names lines of the compiled modules too) the
lines that grew most since the line before. The probe's own thread adds
one malloc arena.

    PYTHONPATH=benchmarks/memory_probe MEDSETTLE_MEMORY_PROBE=var/probe \\
        medsettle load --mode unary --no-echo --duration 300
"""

import os
import sys

if os.environ.get("MEDSETTLE_MEMORY_PROBE") and sys.argv[:1] == ["-c"]:
    import threading

    def _probe() -> None:
        import time
        import tracemalloc
        from pathlib import Path

        import memory_figures

        frames = int(os.environ.get("MEDSETTLE_MEMORY_PROBE_TRACE", "0"))
        every = float(os.environ.get("MEDSETTLE_MEMORY_PROBE_S", "15"))
        if frames:
            tracemalloc.start(frames)
        out = Path(os.environ["MEDSETTLE_MEMORY_PROBE"]) / f"writer-{os.getpid()}.txt"
        started = time.monotonic()
        snapshot = tracemalloc.take_snapshot() if frames else None
        with out.open("a") as report:
            print(f"{'seconds':>7s} " + memory_figures.header(), file=report, flush=True)
            while True:
                print(f"{time.monotonic() - started:7.1f} " + memory_figures.line(memory_figures.figures()),
                      file=report, flush=True)
                if snapshot is not None:
                    newer = tracemalloc.take_snapshot()
                    memory_figures.top_growth(snapshot, newer, 15, report)
                    report.flush()
                    snapshot = newer
                time.sleep(every)

    threading.Thread(target=_probe, name="memory-probe", daemon=True).start()
