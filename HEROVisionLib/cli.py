"""The ``herovision`` command line.

User mistakes (bad paths, unusable inputs) end with one line ``herovision: error: …`` and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import sys
from pathlib import Path

from . import __version__
from .errors import HEROVisionError, InputError

DEMO_SEED = 2025
#: Exit status of a batch that finished with at least one failed case (bad input: 2; all predicted: 0).
BATCH_FAILED_CASES = 1


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error every HEROVision mistake gets (exit status 2)."""

    def error(self, message):
        self.exit(2, f"herovision: error: {self.prog}: {message}\n")


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
    return value


def _count(text: str) -> int:
    """argparse type: a whole number ≥ 1 (cases, processes, epochs, resamples)."""
    return _whole_number(text, 1)


def _seed(text: str) -> int:
    """argparse type: a random seed, a whole number ≥ 0 (what numpy's generators take)."""
    return _whole_number(text, 0)


def _add_phantom(commands):
    parser = commands.add_parser("phantom", help="generate a digital phantom cohort (PHANTOM.md)")
    parser.add_argument("--n", type=_count, required=True, help="number of cases")
    parser.add_argument("--seed", type=_seed, required=True, help="cohort seed (case i uses seed and i)")
    parser.add_argument("--out", type=Path, required=True, help="cohort folder to write")
    parser.add_argument("--profile", default="A", help="acquisition profile: A (default), B (another centre) or R (randomised per case)")
    parser.add_argument("--workers", type=_count, default=None, help="processes (default: all cores)")
    parser.set_defaults(run=_run_phantom)


def _writing(args, command: str, *inputs):
    """The run's output folder, claimed before any work (see ``io.output_folder``): refused unless new,
    empty, or made by the same command before; no empty folder is left if the run fails."""
    from .io.output_folder import output_folder

    return output_folder(args.out, command, inputs)


def _run_phantom(args) -> int:
    from .phantom import generate_cohort

    with _writing(args, "phantom"):
        out = generate_cohort(args.n, args.seed, args.out, args.profile, args.workers)
    print(f"{args.n} phantom cases written to {out} (cohort.csv, truth.csv)")
    return 0


def _add_import(commands):
    parser = commands.add_parser("import", help="a patient's DICOM study → a case folder (dcm2niix for MR)")
    parser.add_argument("study", type=Path, help="folder of one patient's DICOM study (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the case into, as OUT/CASE_ID")
    parser.add_argument("--case-id", help="the case id (default: the study's Patient ID)")
    parser.add_argument("--rules", type=Path, help="JSON file of series rules replacing the defaults (see README)")
    parser.set_defaults(run=_run_import)


def _run_import(args) -> int:
    from .io.dicom_study import import_study

    case, assignment = import_study(args.study, args.out, case_id=args.case_id, rules=args.rules)
    print("\n".join(assignment.lines()))
    print(f"Case written to {case}")
    return 0


def _add_export_dicom(commands):
    parser = commands.add_parser("export-dicom", help="a prediction as DICOM SEG and Parametric Maps of its source study")
    parser.add_argument("prediction", type=Path, help="a folder written by `herovision predict` (results.json, maps)")
    parser.add_argument("--source", type=Path, required=True, help="the DICOM study the case was imported from")
    parser.add_argument("--out", type=Path, required=True, help="folder for the DICOM objects")
    parser.add_argument("--case", type=Path, help="the case folder (default: the one results.json names)")
    parser.set_defaults(run=_run_export_dicom)


def _run_export_dicom(args) -> int:
    from .predict.dicom_export import export_dicom

    for path in export_dicom(args.prediction, args.source, args.out, args.case):
        print(f"wrote {path}")
    return 0


def _add_inspect(commands):
    parser = commands.add_parser("inspect", help="check and summarise a case folder or a cohort")
    parser.add_argument("path", type=Path, help="a case folder, or a cohort folder with cohort.csv")
    parser.set_defaults(run=_run_inspect)


def _print_summaries(cases) -> int:
    from .io.summary import summarise_case

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
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else the CPU), cpu, cuda, "
                                                         "cuda:1, mps …")
    _add_threads_option(parser)
    # The CPU fit needs no torch: the device is resolved by the fit, which loads torch only for a GPU.
    parser.set_defaults(run=_run_ivim, device_resolved_by_command=True)


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
    from .ivim.maps import body_mask

    with _writing(args, "ivim", args.input, args.mask) as out:
        series, roi, roi_source = _read_ivim_input(args.input)
        if args.mask:
            mask, fitted = read_image(args.mask, label=True), f"voxels of {args.mask} fitted"
        else:
            mask, fitted = body_mask(series)
        maps = fit_series(series, mask, args.method, args.device, progress=True,
                          mask_source=args.mask or "the automatic body mask")
        statistics_roi, statistics_source = (mask, args.mask) if args.mask else (roi, roi_source)
        with staged_outputs(out.path) as stage:
            for name, image in maps.items():  # uncompressed: gzip cost more than the fit's last third
                write_image(image, stage / f"ivim_{name}.nrrd", compress=False)
            if statistics_roi is not None:
                table = roi_statistics(maps, statistics_roi, statistics_source)
                write_text_atomic(table.to_csv(index=False, float_format="%.6g"), stage / "ivim_statistics.csv")
    print(f"IVIM maps ({args.method} fit) written to {args.out}: " + ", ".join(f"ivim_{name}.nrrd" for name in maps))
    print(fitted[0].upper() + fitted[1:])
    if statistics_roi is None:
        print("No ROI (give --mask, or a case folder with ivim_roi): no statistics written.")
    else:
        print(f"Statistics per label of {statistics_source}: ivim_statistics.csv")
        print(table.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    return 0


def _add_model_options(parser):
    parser.add_argument("--models", type=Path, help="folder of model packages (default: the bundled ones, "
                                                    "or HEROVISION_MODELS)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 …")
    _add_threads_option(parser)


def _add_threads_option(parser):
    parser.add_argument("--threads", type=_count, help="CPU threads of this process (default: every core); "
                                                       "processes side by side should share the cores")


def _draw_count(text: str) -> int:
    """argparse type: refuse a negative count before any case is predicted."""
    from .clinical.treatment import check_advice_draws

    count = int(text)
    try:
        check_advice_draws(count)
    except InputError as error:
        raise argparse.ArgumentTypeError(error.problem) from None
    return count


def _add_advice_option(parser):
    parser.add_argument("--advice-draws", type=_draw_count, default=32, metavar="N",
                        help="perturbed-image re-scorings measuring how firm the treatment advice is "
                             "(advice.json and the advice_… columns; default 32, 0: no advice)")


def _add_case_command(commands, name: str, description: str, out_help: str, run):
    parser = commands.add_parser(name, help=description)
    parser.add_argument("case", type=Path, help="a case folder (docs/PHANTOM.md layout)")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--clinical", default="", metavar="NAME=VALUE,…",
                        help="clinical values for the nomograms, e.g. afp_high=1,portal_hypertension=0 (default: the "
                             "case's row of cohort.csv in the folder above it, when there is one)")
    _add_model_options(parser)
    parser.set_defaults(run=run)
    return parser


def _load_case(args):
    """The case folder with its clinical record: its row of the enclosing cohort.csv, then --clinical."""
    from .io.case import Case, Cohort, parse_clinical_values

    if not args.case.is_dir():
        raise HEROVisionError(f"{args.case}: not a case folder")
    clinical = {}
    if (args.case.parent / "cohort.csv").is_file():
        cohort = Cohort(args.case.parent, strict=False)  # only this case's row must be sound
        if args.case.name in cohort.case_ids:
            clinical = dict(cohort.case(args.case.name).clinical)
    clinical.update(parse_clinical_values(args.clinical, "--clinical"))
    return Case(args.case, clinical or None)


def _add_predict(commands):
    parser = _add_case_command(commands, "predict", "predict one case: risks, recurrence, treatment advice, "
                                                    "attention overlays, IVIM maps",
                               "folder for results.csv, results.json, advice.json and NRRD files", _run_predict)
    _add_advice_option(parser)
    parser.add_argument("--dicom", type=Path, metavar="STUDY",
                        help="the DICOM study the case was imported from: also write the results as DICOM SEG, "
                             "Parametric Maps and SR of that study into OUT/dicom")
    parser.set_defaults(device_resolved_by_command=True)  # after the IVIM inputs are started (_run_predict)


def _print_result(result, case, advice: dict | None = None) -> None:
    from .clinical.treatment import planned_treatment, summary_line

    row = result.row()
    print(f"case {result.case_id} ({', '.join(result.inputs_used)}; {row['seconds']:.1f} s on {result.device})")
    for key, name in (("ta", "thermal ablation"), ("sr", "resection")):
        if key in result.survival:
            print(f"  {name:17s} risk score {row[f'{key}_risk_score']:+.3f} ({row[f'{key}_risk_group']} risk by its cutoff); "
                  f"PFS 1/2/3 y {row[f'{key}_pfs_1y']:.2f} / {row[f'{key}_pfs_2y']:.2f} / {row[f'{key}_pfs_3y']:.2f}")
            if result.survival[key].nomogram:
                print(f"  {'  nomogram':17s} {row[f'{key}_nomogram_points']:.0f} points "
                      f"({row[f'{key}_nomogram_risk_group']} risk by its cutoff); PFS 1/2/3 y {row[f'{key}_nomogram_pfs_1y']:.2f} / "
                      f"{row[f'{key}_nomogram_pfs_2y']:.2f} / {row[f'{key}_nomogram_pfs_3y']:.2f}")
    print(f"  early recurrence  {row['er_probability']:.2f} (deep), {row['er_probability_combined']:.2f} (combined)")
    print(f"  tumour            {row['tumor_size_cm']:.1f} cm, {row['tumor_volume_ml']:.1f} mL; "
          f"IVIM D {1e3 * row['ivim_D_median']:.2f}e-3 mm²/s, f {row['ivim_f_median']:.3f}")
    print(f"  summary           {summary_line(result, planned_treatment(case), advice)}")
    for warning in result.warnings:
        print(f"  warning: {warning}")


def _ivim_inputs_ahead(args):
    """The case's IVIM inputs started in another process while this one loads torch (see
    ``IVIMInputsAhead``); None where that would not pay: one core, or a device that may be a GPU
    (the IVIM fit runs there)."""
    from .devices import cpu_threads, cuda_possible
    from .transforms.ivim_crops import IVIMInputsAhead

    cpu_only = args.device == "cpu" or (args.device == "auto" and not cuda_possible())
    if cpu_threads() < 2 or not cpu_only or not args.case.is_dir() or not IVIMInputsAhead.possible():
        return None
    return IVIMInputsAhead(args.case, args.models)


def _run_predict(args) -> int:
    ivim_ahead = _ivim_inputs_ahead(args)  # before torch is loaded, below
    from .devices import resolve_device

    args.device = resolve_device(args.device)
    from .io.dicom_study import study_series
    from .io.images import staged_outputs
    from .io.output_folder import refuse_overlap
    from .predict import load_models, predict_case, write_case_outputs
    from .predict.dicom_export import add_dicom_outputs
    from .clinical.treatment import case_advice

    with _writing(args, "predict", args.case, args.models) as out:
        case = _load_case(args)
        models = load_models(args.models, args.device)
        refuse_overlap(out.path, models.paths, args.out)
        result = predict_case(case, models, args.device, ivim_ahead=ivim_ahead)
        advice = case_advice(case, result, models, args.advice_draws, args.device)
        if args.dicom:
            study_series(args.dicom)  # not a study: refused before any work
        with staged_outputs(out.path) as stage:
            write_case_outputs(result, stage, advice)
            if args.dicom:
                add_dicom_outputs(stage, args.dicom, case)
    _print_result(result, case, advice)
    if advice:
        print(f"  advice            {advice['words']}")
    print(f"Results, overlays and maps written to {args.out}; `herovision report {args.out} --out report.pdf` "
          "draws them")
    return 0


def _add_report(commands):
    parser = commands.add_parser("report", help="the per-patient report (PDF or PNG) of a `herovision predict` folder")
    parser.add_argument("prediction", type=Path, help="folder written by `herovision predict`")
    parser.add_argument("--out", type=Path, required=True, help="report file, .pdf (two A4 pages) or .png")
    parser.add_argument("--case", type=Path, help="the case folder, when it moved since the prediction")
    parser.add_argument("--models", type=Path, help="model packages (default: the bundled ones)")
    parser.set_defaults(run=_run_report)


def _run_report(args) -> int:
    from .clinical.report import render_report

    print(f"Report written to {render_report(args.prediction, args.out, args.models, args.case)}")
    return 0


def _add_batch(commands):
    parser = commands.add_parser("batch", help="predict every case of a cohort (streamed, sharded, resumable)")
    parser.add_argument("cohort", type=Path, help="cohort folder (cohort.csv, or case folders)")
    parser.add_argument("--out", type=Path, required=True, help="folder for one sub-folder per case and results.csv")
    parser.add_argument("--shard", default="1/1", help="i/n: predict every n-th case from the i-th (default 1/1)")
    parser.add_argument("--resume", action="store_true", help="skip cases already predicted without error")
    parser.add_argument("--processes", type=_count, default=1,
                        help="shards run side by side, the cores divided among them (default 1)")
    parser.add_argument("--dicom", type=Path, metavar="STUDIES",
                        help="a folder of the cases' DICOM studies, one sub-folder per case id: also write each "
                             "case's results as DICOM SEG, Parametric Maps and SR into its dicom/ folder")
    _add_model_options(parser)
    _add_advice_option(parser)
    parser.set_defaults(run=_run_batch)


def _run_batch(args) -> int:
    from .predict import load_models, parse_shard, predict_cohort
    from .clinical.treatment import cohort_advice

    shard = parse_shard(args.shard)
    if args.processes > 1:
        return _run_batch_processes(args)
    with _writing(args, "batch", args.cohort, args.models):
        models = load_models(args.models, args.device)
        table = predict_cohort(args.cohort, models, args.out, shard=shard, resume=args.resume, device=args.device,
                               advice=cohort_advice(models, args.advice_draws, args.device),
                               dicom_studies=args.dicom)
    return _report_batch(table, args.out)


def _run_batch_processes(args) -> int:
    """``batch --processes N``: N shards of this batch as child processes, each with its share of the
    cores (``--threads``, and the OpenMP/BLAS pools told the same), merging into one results.csv."""
    import subprocess
    import tempfile

    from .devices import available_cores
    from .io.case import Cohort
    from .predict.batch import write_merged_table

    if args.shard != "1/1":
        raise InputError("--processes", "runs every shard of the cohort itself: give --processes or --shard, not both")
    threads = args.threads or max(1, available_cores() // args.processes)
    with _writing(args, "batch", args.cohort, args.models):  # claimed (or refused) once, before any child starts
        common = [str(args.cohort), "--out", str(args.out), "--threads", str(threads), "--device", str(args.device),
                  "--advice-draws", str(args.advice_draws), *(["--resume"] if args.resume else []),
                  *(["--models", str(args.models)] if args.models else []),
                  *(["--dicom", str(args.dicom)] if args.dicom else [])]
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        print(f"{args.processes} shards running, {threads} thread(s) each")
        with tempfile.TemporaryDirectory(prefix="herovision-shards-") as logs:
            errors = [Path(logs) / f"shard{k}.err" for k in range(1, args.processes + 1)]
            handles = [open(log, "w") for log in errors]
            children = [subprocess.Popen([sys.executable, "-m", "HEROVisionLib.cli", "batch", *common,
                                          "--shard", f"{k}/{args.processes}"], env=environment,
                                         stdout=subprocess.DEVNULL, stderr=handle)
                        for k, handle in enumerate(handles, 1)]
            _follow(children, args.out, len(Cohort(args.cohort, strict=False)))
            codes = [child.wait() for child in children]
            for handle in handles:
                handle.close()
            for k, log in enumerate(errors, 1):  # the shards' own messages, without their progress bars
                for line in log.read_text(errors="replace").replace("\r", "\n").splitlines():
                    if line.startswith("herovision:"):
                        print(f"shard {k}/{args.processes}: {line}", file=sys.stderr)
        table = write_merged_table(args.out)  # every shard's cases, whichever finished last
    status = _report_batch(table, args.out)
    broken = [k for k, code in enumerate(codes, 1) if code not in (0, BATCH_FAILED_CASES)]
    if broken:
        print(f"herovision: error: shard(s) {', '.join(map(str, broken))} stopped early (exit "
              f"{', '.join(str(codes[k - 1]) for k in broken)}); run again with --resume", file=sys.stderr)
        return 2
    return status


def _follow(children, out: Path, total: int) -> None:
    """A progress bar of the cases the shards have finished (their folders under ``out``) until all exit."""
    import time

    from tqdm import tqdm

    from .predict.batch import published_case_tables

    with tqdm(total=total, desc="cases", unit="case") as bar:
        while any(child.poll() is None for child in children):
            time.sleep(1.0)
            bar.n = len(published_case_tables(out))
            bar.refresh()


def _report_batch(table, out) -> int:
    failed = table[table["status"] != "ok"] if len(table) else table
    print(f"{len(table) - len(failed)} case(s) predicted, {len(failed)} failed; table: {out / 'results.csv'}")
    for row in failed.itertuples():
        print(f"  {row.case_id}: {row.error}")
    return BATCH_FAILED_CASES if len(failed) else 0


def _add_cohort_run_options(parser):
    parser.add_argument("--workers", type=_count, help="processes preparing the inputs (default: all cores)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda …")
    _add_threads_option(parser)


def _add_train(commands):
    parser = commands.add_parser("train", help="train a model on a cohort and write its model package")
    parser.add_argument("--task", required=True, help="pfs-ta, pfs-sr (HEROVision survival) or er (IVIM early recurrence)")
    parser.add_argument("--cohort", type=Path, required=True, help="cohort folder (cohort.csv with outcomes)")
    parser.add_argument("--out", type=Path, required=True, help="model package folder to write")
    parser.add_argument("--preset", default="default", help="network size and schedule: default or tiny")
    parser.add_argument("--split", default="stratified", help="internal validation split: stratified or chronological")
    parser.add_argument("--epochs", type=_count, help="maximum epochs (default: the preset's)")
    parser.add_argument("--members", type=_count,
                        help="networks averaged, trained from seeds SEED, SEED+1, … (default: the preset's; "
                             "default preset: 3 for pfs-ta and pfs-sr, 2 for er)")
    parser.add_argument("--seed", type=_seed, default=0)
    _add_cohort_run_options(parser)
    parser.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from .train.run import train_task

    package = train_task(args.task, args.cohort, args.out, preset=args.preset, split_how=args.split,
                         epochs=args.epochs, members=args.members, seed=args.seed, device=args.device,
                         workers=args.workers, command=args.command_line)
    if package is not None:
        print(f"Model package written to {package}; training log and curves in {package}-training")
    return 0


def _add_evaluate(commands):
    parser = commands.add_parser("evaluate", help="a model package's performance on a cohort, with CIs and plots")
    parser.add_argument("--package", type=Path, required=True, help="model package folder")
    parser.add_argument("--cohort", type=Path, required=True, help="cohort folder (cohort.csv with outcomes)")
    parser.add_argument("--out", type=Path, required=True, help="folder for metrics.json, metrics.csv and PNG plots")
    parser.add_argument("--bootstrap", type=_count, default=1000, help="bootstrap resamples for CIs (default 1000)")
    parser.add_argument("--record", action="store_true", help="write the metrics into the package and its model card")
    parser.add_argument("--compare", action="store_true",
                        help="survival packages: also compare with the nomogram, the clinical model and the six "
                             "staging systems, alone and with the HEROVision score (comparison.csv, comparison.png)")
    _add_cohort_run_options(parser)
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    import json

    from .evaluate.package_metrics import evaluate_package

    with _writing(args, "evaluate", args.package, args.cohort):
        metrics = evaluate_package(args.package, args.cohort, args.out, device=args.device, n_boot=args.bootstrap,
                                   workers=args.workers, record=args.record, compare=args.compare,
                                   command=args.command_line)
    comparison = metrics.pop("comparison", None)
    print(json.dumps(metrics, indent=2, default=float))
    if comparison:
        print("\n".join(comparison["markdown"]))
    print(f"Metrics and plots written to {args.out}" + ("; recorded in the package" if args.record else ""))
    return 0


def _add_cohort_analysis(commands):
    parser = commands.add_parser("cohort-analysis", help="treatment re-stratification, PSM, subgroups on a predicted cohort")
    parser.add_argument("results", type=Path, help="results.csv of `herovision batch` (or its folder)")
    parser.add_argument("--cohort", type=Path, required=True,
                        help="cohort.csv (or its folder): treatment received, PFS and clinical factors")
    parser.add_argument("--out", type=Path, required=True, help="folder for tables, figures and summary.json")
    parser.add_argument("--truth", type=Path, help="the phantom's truth.csv: also report agreement with the oracle")
    parser.set_defaults(run=_run_cohort_analysis)


def _run_cohort_analysis(args) -> int:
    from .clinical.cohort_analysis import analyse_cohort, summary_lines

    with _writing(args, "cohort-analysis", args.results, args.cohort, args.truth):
        summary = analyse_cohort(args.results, args.cohort, args.out, args.truth)
    print("\n".join(summary_lines(summary)))
    print(f"Summary (summary.json), tables and figures written to {args.out}")
    return 0


def _add_scene(commands):
    _add_case_command(commands, "scene", "predict a case and write a Slicer scene with inputs and outputs",
                      "folder for scene.mrml and its data files", _run_scene)


def _run_scene(args) -> int:
    try:
        import slicer
    except ImportError:
        raise HEROVisionError("herovision scene needs MRML outside Slicer: pip install slicer-core") from None

    from .slicer.nodes import predict_scene, save_scene, scene_inputs_from_case
    from .predict import load_models

    with _writing(args, "scene", args.case, args.models):
        models = load_models(args.models, args.device)
        scene = slicer.vtkMRMLScene()
        case = _load_case(args)
        result, _ = predict_scene(scene, scene_inputs_from_case(scene, case), models, args.device)
        path = save_scene(scene, args.out, inputs=(args.case, *models.paths))
    _print_result(result, case)
    print(f"Slicer scene written to {path} (File → Add Data, or drag it onto Slicer)")
    return 0


def _add_demo(commands):
    parser = commands.add_parser("demo", help="generate a phantom case and predict it with the bundled models")
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda …")
    parser.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    with _writing(args, "demo"):
        return _demo(args)


def _demo(args) -> int:
    from .io.case import Cohort
    from .io.images import staged_outputs
    from .predict import bundled_models_folder, load_models, predict_case, write_case_outputs, write_untrained_models
    from .phantom import generate_cohort
    from .clinical.treatment import case_advice

    cohort_folder = args.out / "phantom"
    print(f"Generating phantom case {DEMO_SEED}/1 in {cohort_folder} …")
    cohort = Cohort(generate_cohort(1, DEMO_SEED, cohort_folder, progress=False))
    _print_summaries(cohort)
    models_folder = bundled_models_folder()
    if not models_folder.is_dir():
        models_folder = write_untrained_models(args.out / "untrained-models")
        print(f"No bundled models: using UNTRAINED placeholders written to {models_folder} (numbers are meaningless).")
    models = load_models(models_folder, args.device)
    case = next(iter(cohort))
    result = predict_case(case, models, args.device)
    advice = case_advice(case, result, models, device=args.device)
    with staged_outputs(args.out / "prediction" / case.case_id) as stage:
        write_case_outputs(result, stage, advice)
    _print_result(result, case, advice)
    if advice:
        print(f"  advice            {advice['words']}")
    print(f"Results, overlays (attention_*.nrrd) and IVIM maps (ivim_*.nrrd) in {args.out / 'prediction' / case.case_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="herovision", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"HEROVision {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_predict, _add_report, _add_batch, _add_scene, _add_cohort_analysis, _add_train,
                _add_evaluate, _add_phantom, _add_import, _add_export_dicom, _add_inspect, _add_ivim):
        add(commands)
    return parser


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):  # units and dashes must not crash a console that cannot show them
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "herovision " + shlex.join(argv)  # recorded on model cards
    try:
        if getattr(args, "threads", None) is not None:
            from .devices import limit_threads

            limit_threads(args.threads)
        if getattr(args, "device", None) is not None and not getattr(args, "device_resolved_by_command", False):
            # resolved once for the whole run
            from .devices import resolve_device

            args.device = resolve_device(args.device)
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


def run() -> None:
    """The ``herovision`` command: :func:`main`, then an exit that skips tearing the interpreter down.
    Every output is written, renamed into place and closed before ``main`` returns, worker threads
    and processes are joined and exit handlers run; what normal interpreter shutdown would add is
    freeing torch's and MONAI's objects one by one — about 0.6 s a command, which the operating
    system does at once. An error that escapes ``main`` (a bug) leaves the usual way, traceback
    included."""
    outcome = {}
    atexit.register(_leave_at_once, outcome)  # registered first, so it runs after every other exit handler
    outcome["status"] = main()
    sys.exit(outcome["status"])


def _leave_at_once(outcome: dict) -> None:
    if "status" not in outcome:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said on it
            pass
    os._exit(outcome["status"])


if __name__ == "__main__":
    run()
