"""What a user waits for, each figure against its target, measured in fresh processes one at a time:

* the floor: ``python -c "import torch, monai"`` (prediction cannot start sooner);
* commands that need no network (``--help``, ``inspect``, ``phantom``) and whether they loaded torch;
* a cold ``herovision predict`` of one phantom case, advice included, against the floor + 1 s;
* a warm case in one process: prediction and advice;
* a 100-case ``batch`` with advice, in one process and with ``--processes 2``;
* ``herovision ivim`` on a 100³ × 9 series (10⁶ voxels, SNR 50).

Medians of ``--repeat`` runs (cold figures) and of five (warm). No GPU figure unless ``--device cuda``.

    python bench/speed_bench.py [--models DIR] [--cases 100] [--repeat 3] [--device cpu]

Without --models it uses the bundled models.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEROVISION = [sys.executable, "-m", "HEROVisionLib.cli"]
TARGETS = {"cold predict over the import floor": 1.0, "warm case, prediction + advice": 1.0,
           "batch of 100 cases with advice": 120.0, "herovision ivim, 10^6 voxels": 3.0}


def wall(command, repeat: int) -> float:
    """Median wall time of ``command`` in fresh processes (it must succeed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loads_torch(arguments) -> bool:
    """Whether the command ``herovision ARGUMENTS`` imports torch."""
    probe = ("import sys; from HEROVisionLib.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, *arguments], capture_output=True, text=True)
    return result.stderr.strip().splitlines()[-1] == "True"


def ivim_series(folder: Path) -> Path:
    """A 100³ × 9 IVIM series (SNR 50 at b = 0) with its .bval."""
    import SimpleITK as sitk

    from HEROVisionLib.io.diffusion import DiffusionSeries, write_diffusion_series
    from HEROVisionLib.io.images import frames_to_vector
    from HEROVisionLib.ivim.simulate import synthetic_voxels

    bvalues = (0.0, 10, 20, 40, 80, 200, 400, 600, 1000)
    signal = synthetic_voxels(100**3, bvalues, snr=50, seed=0).signal.numpy().astype(np.float32)
    frames = [sitk.GetImageFromArray(signal[:, k].reshape(100, 100, 100)) for k in range(len(bvalues))]
    return write_diffusion_series(DiffusionSeries(frames_to_vector(frames), bvalues, "bench"), folder / "ivim.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    models = ["--models", str(args.models)] if args.models else []
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        subprocess.run([*HEROVISION, "phantom", "--n", str(args.cases), "--seed", "11", "--out", str(scratch / "cohort")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        case = scratch / "cohort" / "A0001"
        floor = wall([sys.executable, "-c", "import torch, monai"], args.repeat)
        rows.append(("import torch, monai (the floor)", floor, None))
        fresh = (scratch / f"out{k}" for k in range(10_000))  # a new output folder for every run
        for name, arguments in (("herovision --help", lambda: ["--help"]),
                                ("herovision inspect CASE", lambda: ["inspect", str(case)]),
                                ("herovision phantom --n 1", lambda: ["phantom", "--n", "1", "--seed", "3", "--out",
                                                                      str(next(fresh))])):
            seconds = statistics.median(wall([*HEROVISION, *arguments()], 1) for _ in range(args.repeat))
            rows.append((f"{name} (loads torch: {loads_torch(arguments())})", seconds, None))
        cold = statistics.median(wall([*HEROVISION, "predict", str(case), "--out", str(next(fresh)), "--device",
                                       args.device, *models], 1) for _ in range(args.repeat))
        rows.append(("cold predict of one case, advice included", cold, None))
        rows.append(("cold predict over the import floor", cold - floor, TARGETS["cold predict over the import floor"]))

        from HEROVisionLib.clinical.treatment import case_advice
        from HEROVisionLib.io.case import Cohort
        from HEROVisionLib.predict import load_models, predict_case

        loaded = load_models(args.models, args.device)
        record = next(iter(Cohort(scratch / "cohort")))
        warm = []
        for _ in range(6):
            start = time.perf_counter()
            result = predict_case(record, loaded, args.device)
            case_advice(record, result, loaded, device=args.device)
            warm.append(time.perf_counter() - start)
        rows.append(("warm case, prediction + advice", statistics.median(warm[1:]), TARGETS["warm case, prediction + advice"]))

        for processes in (1, 2):
            start = time.perf_counter()
            subprocess.run([*HEROVISION, "batch", str(scratch / "cohort"), "--out", str(scratch / f"batch{processes}"),
                            "--processes", str(processes), "--device", args.device, *models],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seconds = (time.perf_counter() - start) * 100 / args.cases
            rows.append((f"batch of 100 cases with advice, --processes {processes}", seconds,
                         TARGETS["batch of 100 cases with advice"]))

        series = ivim_series(scratch)
        seconds = statistics.median(wall([*HEROVISION, "ivim", str(series), "--out", str(next(fresh)), "--device",
                                          args.device], 1) for _ in range(args.repeat))
        rows.append(("herovision ivim, 10^6 voxels", seconds, TARGETS["herovision ivim, 10^6 voxels"]))

    print(f"\n{'figure':<62} {'seconds':>9} {'target':>8}  measured/target")
    for name, seconds, target in rows:
        print(f"{name:<62} {seconds:>9.2f} " + (f"{target:>8.1f}  {seconds / target:.2f}" if target else ""))


if __name__ == "__main__":
    main()
