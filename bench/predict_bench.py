"""Prediction benchmark: one case (all models, overlays, IVIM maps of the VOI) cold and warm, peak
memory, and a cohort batch — each against its target, printed as measured / target.

    python bench/predict_bench.py [--cases 100] [--models DIR] [--device cpu]

Without --models it uses untrained placeholder packages (same networks, same cost).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from HEROVisionLib.io.case import Cohort
from HEROVisionLib.phantom import generate_cohort
from HEROVisionLib.predict import load_models, predict_case, predict_cohort, write_untrained_models

TARGETS_S = {"one case, warm": 2.0, "one case, with model loading": 6.0}
BATCH_TARGET_S_PER_100 = 180.0
RSS_TARGET_MB = 2048


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--models", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        models_folder = args.models or write_untrained_models(scratch / "models")
        start = time.perf_counter()
        cohort_folder = generate_cohort(args.cases, 11, scratch / "cohort", progress=False)
        print(f"{args.cases} phantom cases generated in {time.perf_counter() - start:.0f} s")
        case = next(iter(Cohort(cohort_folder)))

        start = time.perf_counter()
        models = load_models(models_folder, args.device)
        predict_case(case, models, args.device)
        cold = time.perf_counter() - start
        warm = []
        for _ in range(3):
            start = time.perf_counter()
            result = predict_case(case, models, args.device)
            warm.append(time.perf_counter() - start)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        start = time.perf_counter()
        table = predict_cohort(cohort_folder, models, scratch / "out", device=args.device, progress=False)
        batch = time.perf_counter() - start

    rows = [("one case, warm (best of 3)", min(warm), TARGETS_S["one case, warm"], "s"),
            ("one case, with model loading", cold, TARGETS_S["one case, with model loading"], "s"),
            ("peak RSS (single-case part)", rss_mb, RSS_TARGET_MB, "MB"),
            (f"batch of {args.cases} cases", batch, BATCH_TARGET_S_PER_100 * args.cases / 100, "s")]
    print(f"\n{'measure':<32} {'measured':>10} {'target':>10}  measured/target")
    for name, value, target, unit in rows:
        print(f"{name:<32} {value:>9.2f}{unit[0]} {target:>9.0f}{unit[0]}  {value / target:.2f}")
    print("\nwarm stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    print(f"batch: {int((table['status'] == 'ok').sum())} ok, {int((table['status'] != 'ok').sum())} failed")


if __name__ == "__main__":
    main()
