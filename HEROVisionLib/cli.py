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
    for add in (_add_demo, _add_phantom, _add_inspect):
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
