"""Reader throughput on a generated applications CSV: rows/s and peak RSS, csv-module and Arrow paths.

PYTHONPATH=. .venv/bin/python benchmarks/bench_reader.py --rows 1000000 [--dir /tmp]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from pathlib import Path


def generate(path: Path, rows: int) -> None:
    rnd = random.Random(7)
    stages = ["Applied", "In Review", "phone screen", "offer"]
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("Application ID,First Name,Last Name,Email,Job Code,Stage,Applied At,Years Experience,Notes\n")
        for i in range(rows):
            note = '"Hello,\nworld"' if i % 1000 == 0 else f"note {rnd.randint(0, 99999)}"
            f.write(
                f"APP-{i},Zoë,Müller{i % 97},user{i}@example.com,ENG-{i % 40},{stages[i % 4]},2026-04-0{1 + i % 9}T10:00:00,{i % 30},{note}\n"
            )


def measure(path: Path, arrow: bool) -> None:
    from connectors.files import reader

    reader.ARROW_CSV = arrow
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru0.ru_utime + ru0.ru_stime
    t0 = time.perf_counter()
    f = reader.open_tabular(path)
    n = issues = 0
    for b in f.batches(20000):
        n += b.num_rows
        issues += len(b.issues)
    dt = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime - cpu0
    # cpu time: the machine is shared, wall time varies with the load
    print(
        f"{'arrow' if arrow else 'csv  '} rows={n} issues={issues} wall {dt:.2f}s cpu {cpu:.2f}s "
        f"{n / cpu:,.0f} rows/cpu-s peak {ru.ru_maxrss // 1024} MB"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dir", default="/tmp")
    p.add_argument("--child", choices=["csv", "arrow"])
    a = p.parse_args()
    path = Path(a.dir) / f"bench_reader_{a.rows}.csv"
    if a.child:
        measure(path, a.child == "arrow")
        return
    if not path.exists():
        generate(path, a.rows)
    print(f"{path} {path.stat().st_size / 1e6:.0f} MB")
    for mode in ("csv", "arrow"):
        # a child process each, so peak RSS is that path's own
        subprocess.run([sys.executable, __file__, "--rows", str(a.rows), "--dir", a.dir, "--child", mode], check=True)


if __name__ == "__main__":
    main()
