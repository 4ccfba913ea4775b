"""Cost of the merged ``results.csv`` a batch rewrites after every case, by cohort size.

Writes N case folders with a full-width results row, then times one merge read from scratch (every
case table parsed, as each merge did before the batch kept what it had read) and one merge after
one more case is published with the tables already read kept. A batch merges once per case, so the
per-case cost of the first grows with the cohort and the whole batch's with its square.

    python bench/batch_merge_bench.py [--sizes 100 300 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from HEROVisionLib.io.images import write_text_atomic
from HEROVisionLib.predict.batch import CASE_TABLE, _write_merged_table
from HEROVisionLib.predict.outputs import table_text
from HEROVisionLib.predict.result import ADVICE_COLUMNS, RESULT_COLUMNS


def write_case(out: Path, index: int) -> None:
    row = {column: 0.5 for column in RESULT_COLUMNS + ADVICE_COLUMNS}
    row.update(case_id=f"A{index:05d}", status="ok", error="", inputs_used="ivim;t2wi;dwi;us;ceus")
    write_text_atomic(table_text([row]), out / row["case_id"] / CASE_TABLE)


def seconds(merge) -> float:
    start = time.perf_counter()
    merge()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    args = parser.parse_args()
    print("cases   merge from scratch   merge keeping read tables   ratio   whole batch, from scratch / kept")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch)
            for index in range(size):
                write_case(out, index)
            fresh = seconds(lambda: _write_merged_table(out, {}))
            known = {}
            _write_merged_table(out, known)
            write_case(out, size)
            kept = seconds(lambda: _write_merged_table(out, known))
        # a batch of `size` cases merges after each: on average over half the cohort's tables
        print(f"{size:5d}   {fresh:16.3f} s   {kept:23.3f} s   ×{fresh / kept:5.1f}   "
              f"{size * fresh / 2:8.0f} s / {size * kept / 2:4.0f} s")


if __name__ == "__main__":
    main()
