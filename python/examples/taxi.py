"""AIFM's NYC-taxi analysis from Python, with most of the DataFrame in far memory.

Generates a seeded taxi CSV (unless ``--csv`` names an existing one), loads it into a
``farmem.DataFrame`` whose runtime has local memory of ``--local`` percent of the working set,
runs the nine steps and prints each result. ``--check`` also runs the steps in pandas
(``taxi_pandas.py``) on the same file and exits with status 1 unless every result matches.

    python python/examples/taxi.py --rows 200000 --local 25 --check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import farmem

#: Bytes per row of the taxi columns (3 x 8-byte ints and timestamps, 12 floats, 4 one-byte
#: columns) plus the columns the steps add (duration, distance, hour, weekday, month).
BYTES_PER_ROW = 3 * 8 + 12 * 8 + 4 + (8 + 8 + 3)
#: The smallest local budget a far-memory DataFrame accepts.
MIN_LOCAL_BYTES = 128 << 10


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000, help="trips to generate (default 200000)")
    p.add_argument(
        "--local",
        type=float,
        default=25.0,
        help="local memory as a percentage of the working set, 0 < PCT <= 100 (default 25)",
    )
    p.add_argument("--csv", type=Path, help="taxi CSV to load; generated there if missing")
    p.add_argument("--seed", type=int, default=42, help="seed of the generated data (default 42)")
    p.add_argument("--check", action="store_true", help="compare every step with pandas")
    args = p.parse_args(argv)
    if not 0 < args.local <= 100:
        p.error(f"--local {args.local} is not a percentage in (0, 100]")
    if args.rows < 1:
        p.error(f"--rows {args.rows}: generate at least one row")
    return args


def data_rows(path: Path) -> int:
    """Data lines of a CSV file (the header excluded)."""
    with path.open("rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def run(args: argparse.Namespace, path: Path) -> int:
    if not path.is_file():
        t = time.perf_counter()
        size = farmem.generate_taxi_csv(path, args.rows, seed=args.seed)
        print(f"generated {path} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t:.2f} s")
    rows = data_rows(path)
    working_set = rows * BYTES_PER_ROW
    local = max(int(working_set * args.local / 100), MIN_LOCAL_BYTES)
    print(
        f"{rows} trips; working set {working_set / 2**20:.1f} MiB; "
        f"local memory {local / 2**20:.2f} MiB ({args.local:g}%)"
    )
    with farmem.Runtime(local_memory=local, far_memory=max(4 * working_set, 64 << 20)) as rt:
        t = time.perf_counter()
        df = farmem.DataFrame.read_csv(path, runtime=rt)
        print(f"loaded {len(df)} rows into far memory in {time.perf_counter() - t:.2f} s\n")
        results = df.run_all(echo=True)
        m = rt.metrics()
        print(
            f"far memory: {m['bytes_fetched'] / 2**20:.1f} MiB fetched, "
            f"{m['bytes_written_back'] / 2**20:.1f} MiB written back, "
            f"{m['hits']} hits, {m['misses']} misses"
        )
    if not args.check:
        return 0
    # Imported here so the example runs without pandas when --check is not given.
    import taxi_pandas

    t = time.perf_counter()
    theirs = taxi_pandas.run_all(taxi_pandas.read_taxi_csv(path))
    ours = {k: v for k, v in results.items() if k != "timings"}
    diffs = taxi_pandas.differences(ours, theirs)
    print(f"pandas ran the nine steps in {time.perf_counter() - t:.2f} s")
    if diffs:
        print("pandas check: MISMATCH\n" + "\n".join(diffs))
        return 1
    print("pandas check: all nine steps match")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.csv is not None:
            return run(args, args.csv)
        with tempfile.TemporaryDirectory(prefix="farmem-taxi-") as tmp:
            return run(args, Path(tmp) / f"taxi-{args.rows}-{args.seed}.csv")
    except farmem.FarmemError as e:
        print(f"taxi.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
