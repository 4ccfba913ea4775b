"""Report benchmark: rendering the per-patient report (PDF and PNG) of predicted phantom cases, against
the ≤ 2 s per case target, and the test-time-augmented advice `herovision predict` adds.

    python bench/report_bench.py [--cases 5] [--models DIR]

Without --models it uses untrained placeholder packages (same networks, same cost).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from HEROVisionLib.io.case import Cohort
from HEROVisionLib.phantom import generate_cohort
from HEROVisionLib.predict import load_models, predict_case, write_case_outputs, write_untrained_models
from HEROVisionLib.clinical.report import render_report
from HEROVisionLib.clinical.treatment import case_advice

TARGET_S = 2.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--models", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        models_folder = args.models or write_untrained_models(scratch / "models")
        models = load_models(models_folder, "cpu")
        cohort = Cohort(generate_cohort(args.cases, 13, scratch / "cohort", progress=False))
        timings = {"advice (case_advice, 32 draws)": [], "report PDF": [], "report PNG": []}
        for case in cohort:
            result = predict_case(case, models, "cpu")
            folder = scratch / "predictions" / case.case_id
            folder.mkdir(parents=True)
            start = time.perf_counter()
            advice = case_advice(case, result, models)
            timings["advice (case_advice, 32 draws)"].append(time.perf_counter() - start)
            write_case_outputs(result, folder, advice)
            for kind in ("PDF", "PNG"):
                start = time.perf_counter()
                render_report(folder, scratch / f"{case.case_id}.{kind.lower()}", models_folder)
                timings[f"report {kind}"].append(time.perf_counter() - start)
        print(f"{'step':28s} {'median s':>9s} {'max s':>7s}  target")
        for name, values in timings.items():
            target = f"{statistics.median(values) / TARGET_S:.2f} × the {TARGET_S:g} s target" if "report" in name else ""
            print(f"{name:28s} {statistics.median(values):9.2f} {max(values):7.2f}  {target}")


if __name__ == "__main__":
    main()
