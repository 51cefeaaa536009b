"""Peak resident memory against stream length: ANP streaming vs full BPTT.

The measurement itself lives in ``twinpass.runtime.reproduce.memory`` (``twinpass
reproduce`` draws the same figure); this prints its table.

    python benchmarks/memory.py                      # 10^3, 10^5, 10^6 steps, N = 100
    python benchmarks/memory.py --lengths 1000 100000 --hidden 100
"""

from __future__ import annotations

import argparse
import json

from twinpass.runtime.reproduce.memory import METHODS, measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    rows = []
    for method in METHODS:
        for length in args.lengths:
            row = measure(method, length, args.hidden)
            rows.append(row)
            print(
                f"{method:10s} {length:>9,d} steps  peak RSS {row['peak_rss_mib']:8.1f} MiB  "
                f"(run added {row['run_mib']:7.1f} MiB)",
                flush=True,
            )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
