"""The ``herovision`` command line.

User mistakes (bad paths, unusable inputs) end with one line ``herovision: error: …`` and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import HEROVisionError

DEMO_SEED = 2025
DEMO_CASES = 4


def _add_phantom(commands):
    parser = commands.add_parser("phantom", help="generate a digital phantom cohort (PHANTOM.md)")
    parser.add_argument("--n", type=int, required=True, help="number of cases")
    parser.add_argument("--seed", type=int, required=True, help="cohort seed (case i uses seed and i)")
    parser.add_argument("--out", type=Path, required=True, help="cohort folder to write")
    parser.add_argument("--profile", default="A", help="acquisition profile (default A)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.set_defaults(run=_run_phantom)


def _run_phantom(args) -> int:
    from .phantom import generate_cohort

    out = generate_cohort(args.n, args.seed, args.out, args.profile, args.workers)
    print(f"{args.n} phantom cases written to {out} (cohort.csv, truth.csv)")
    return 0


def _add_inspect(commands):
    parser = commands.add_parser("inspect", help="check and summarise a case folder or a cohort")
    parser.add_argument("path", type=Path, help="a case folder, or a cohort folder with cohort.csv")
    parser.set_defaults(run=_run_inspect)


def _print_summaries(cases) -> int:
    from .summary import summarise_case

    problems = 0
    for case in cases:
        summary = summarise_case(case)
        problems += sum(1 for m in summary.modalities if m.problem)
        print("\n".join(summary.lines()))
    return problems


def _run_inspect(args) -> int:
    from .io.case import Case, Cohort

    if (args.path / "cohort.csv").exists():
        _print_summaries(Cohort(args.path))
    elif args.path.is_dir():
        _print_summaries([Case(args.path)])
    else:
        raise HEROVisionError(f"{args.path}: not a case or cohort folder")
    return 0


def _add_ivim(commands):
    parser = commands.add_parser("ivim", help="IVIM parametric maps (S0, f, D, D*, ADC, R², flags) and ROI statistics")
    parser.add_argument("input", type=Path, help="a case folder, a 4-D image with its .bval, or a DICOM series folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the maps (NRRD) and statistics (CSV)")
    parser.add_argument("--mask", type=Path, help="label map: fit only inside it (default: the whole volume); "
                                                  "statistics per label")
    parser.add_argument("--method", default="full",
                        help="full (bounded least squares of all four parameters, default) or segmented "
                             "(the consensus segmented fit)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 …")
    parser.set_defaults(run=_run_ivim)


def _read_ivim_input(path: Path):
    """(series, statistics ROI or None, its source) of a case folder, a 4-D file or a DICOM folder."""
    from .io.case import Case, find_image_file
    from .io.diffusion import read_diffusion_series
    from .io.images import read_image

    if path.is_dir() and find_image_file(path, "ivim") is not None:
        case = Case(path)
        series = case.load_ivim()
        roi_path = case.roi_path("ivim")
        return series, (read_image(roi_path, label=True) if roi_path else None), roi_path
    return read_diffusion_series(path), None, None


def _run_ivim(args) -> int:
    from .io.images import read_image, staged_outputs, write_image, write_text_atomic
    from .ivim import fit_series, roi_statistics

    series, roi, roi_source = _read_ivim_input(args.input)
    mask = read_image(args.mask, label=True) if args.mask else None
    maps = fit_series(series, mask, args.method, args.device, progress=True, mask_source=args.mask)
    statistics_roi, statistics_source = (mask, args.mask) if mask is not None else (roi, roi_source)
    with staged_outputs(args.out) as stage:
        for name, image in maps.items():
            write_image(image, stage / f"ivim_{name}.nrrd")
        if statistics_roi is not None:
            table = roi_statistics(maps, statistics_roi, statistics_source)
            write_text_atomic(table.to_csv(index=False, float_format="%.6g"), stage / "ivim_statistics.csv")
    print(f"IVIM maps ({args.method} fit) written to {args.out}: " + ", ".join(f"ivim_{name}.nrrd" for name in maps))
    if statistics_roi is None:
        print("No ROI (give --mask, or a case folder with ivim_roi): no statistics written.")
    else:
        print(f"Statistics per label of {statistics_source}: ivim_statistics.csv")
        print(table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    return 0


def _add_demo(commands):
    parser = commands.add_parser("demo", help="generate a small phantom cohort and inspect its cases")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    parser.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from .io.case import Cohort
    from .phantom import generate_cohort

    cohort_folder = args.out / "phantom"
    print(f"Generating {DEMO_CASES} phantom cases (seed {DEMO_SEED}) in {cohort_folder} …")
    generate_cohort(DEMO_CASES, DEMO_SEED, cohort_folder)
    _print_summaries(Cohort(cohort_folder))
    print("Prediction models are not bundled yet: this demo stops at reading and measuring the inputs.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herovision", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"HEROVision {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_phantom, _add_inspect, _add_ivim):
        add(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except HEROVisionError as error:
        print(f"herovision: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # unwritable output folder, full disk…: the system's own words
        print(f"herovision: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("herovision: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
