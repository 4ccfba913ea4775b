"""The command line: phantom generation, case inspection, and one-line errors with exit status 2."""

import pandas as pd
import pytest

from HEROVisionLib.cli import main
from HEROVisionLib.devices import cuda_possible


def test_phantom_command_writes_a_cohort(tmp_path, capsys):
    assert main(["phantom", "--n", "2", "--seed", "5", "--out", str(tmp_path / "c"), "--workers", "1"]) == 0
    table = pd.read_csv(tmp_path / "c" / "cohort.csv")
    assert table["case_id"].tolist() == ["A0001", "A0002"]
    assert "2 phantom cases written" in capsys.readouterr().out


def test_inspect_reports_each_modality(phantom_cohort, capsys):
    assert main(["inspect", str(phantom_cohort / "A0002")]) == 0
    out = capsys.readouterr().out
    assert "case A0002" in out
    assert "b = 0, 10, 20, 40, 80, 200, 400, 600, 1000 s/mm²" in out
    assert "arterial 30 s, portal 60 s, late 180 s" in out
    assert "unavailable" not in out


def test_user_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert main(["phantom", "--n", "1", "--seed", "1", "--out", str(tmp_path), "--profile", "Z"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"herovision: error: {tmp_path / 'nowhere'}: not a case or cohort folder",
                   "herovision: error: --profile: unknown acquisition profile 'Z'; known: A, B, R"]
    with pytest.raises(SystemExit) as refused:  # numpy's generators take no negative seed: it was a traceback
        main(["phantom", "--n", "1", "--seed", "-1", "--out", str(tmp_path / "cohort")])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "herovision: error: herovision phantom: argument --seed: must be at least 0, not -1"]


def test_unwritable_output_is_one_line_with_status_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["phantom", "--n", "1", "--seed", "1", "--out", str(blocker / "cohort"), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("herovision: error: ") and "file" in err[0]


def test_demo_predicts_a_phantom_case_and_labels_placeholder_models(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HEROVISION_MODELS", str(tmp_path / "no-bundled-models"))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED placeholders" in out and "warning: untrained placeholder models" in out
    row = pd.read_csv(tmp_path / "demo" / "prediction" / "A0001" / "results.csv").iloc[0]
    assert row["status"] == "ok" and not row["models_trained"]
    assert (tmp_path / "demo" / "prediction" / "A0001" / "attention_ta_t2wi.nrrd").is_file()


def test_a_case_command_takes_the_clinical_record_from_the_cohort_and_from_the_command_line(phantom_cohort):
    import argparse

    from HEROVisionLib.cli import _load_case
    from HEROVisionLib.errors import InputError

    row = pd.read_csv(phantom_cohort / "cohort.csv").set_index("case_id").loc["A0003"]
    case = _load_case(argparse.Namespace(case=phantom_cohort / "A0003", clinical="afp_high=1, tumor_number=3"))
    assert case.clinical["portal_hypertension"] == row["portal_hypertension"]  # from cohort.csv
    assert case.clinical["afp_high"] == "1" and case.clinical["tumor_number"] == "3"  # overridden
    with pytest.raises(InputError, match="--clinical: 'afp_high' is not NAME=VALUE"):
        _load_case(argparse.Namespace(case=phantom_cohort / "A0003", clinical="afp_high"))


def test_threads_limit_this_process_and_zero_is_refused(phantom_cohort, untrained_models, tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["predict", str(phantom_cohort / "A0001"), "--out", str(tmp_path / "p"), "--models",
                     str(untrained_models), "--device", "cpu", "--advice-draws", "0", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as refused:
        main(["predict", str(phantom_cohort / "A0001"), "--out", str(tmp_path / "q"), "--threads", "0"])
    assert refused.value.code == 2 and "--threads" in capsys.readouterr().err


def test_the_command_exits_with_everything_said_written_and_its_exit_handlers_run(phantom_cohort, tmp_path):
    """``herovision`` leaves without tearing the interpreter down (torch's objects are many): what it
    printed into a pipe arrives whole, its outputs are complete, exit handlers registered while it ran
    still run, and its exit status is main's — 0, or 2 with the one-line refusal."""
    import subprocess
    import sys

    import pandas as pd

    flag = tmp_path / "exit-handler-ran"
    probe = ("import atexit, pathlib, sys\nfrom HEROVisionLib import cli\nreal_main = cli.main\n"
             "def main():\n    atexit.register(pathlib.Path(sys.argv[1]).touch)\n    return real_main(sys.argv[2:])\n"
             "cli.main = main\ncli.run()\n")
    command = [sys.executable, "-c", probe, str(flag)]
    out = tmp_path / "maps"
    done = subprocess.run([*command, "ivim", str(phantom_cohort / "A0001"), "--out", str(out), "--threads", "1"],
                          capture_output=True, encoding="utf-8")
    assert done.returncode == 0 and flag.exists(), done.stderr[-2000:]
    assert done.stdout.rstrip().splitlines()[-1].split()[1] == "R2"  # the statistics table arrived to its last row
    assert pd.read_csv(out / "ivim_statistics.csv")["parameter"].iloc[-1] == "R2"  # complete, readable outputs
    flag.unlink()
    refused = subprocess.run([*command, "inspect", str(tmp_path / "nowhere")], capture_output=True, encoding="utf-8")
    assert refused.returncode == 2 and flag.exists()
    assert refused.stderr == f"herovision: error: {tmp_path / 'nowhere'}: not a case or cohort folder\n"


def _loads_torch(arguments) -> bool:
    """Whether ``herovision ARGUMENTS``, run in a fresh process, succeeded having imported torch."""
    import subprocess
    import sys

    probe = ("import sys\nfrom HEROVisionLib.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
             "except SystemExit as stop:\n    code = stop.code\nprint(code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe, *map(str, arguments)], capture_output=True,
                            encoding="utf-8", errors="replace")
    code, loaded = result.stdout.split()[-2:]
    assert code == "0", (arguments, result.stderr[-2000:])
    return loaded == "True"


def test_commands_that_run_no_network_do_not_load_torch(phantom_cohort, tmp_path):
    """Loading torch costs 1.5 s (and MONAI 3 s more): --help, inspect and phantom must not pay it."""
    for arguments in (["--help"], ["inspect", phantom_cohort / "A0001"],
                      ["phantom", "--n", "1", "--seed", "3", "--out", tmp_path / "cohort"]):
        assert not _loads_torch(arguments), arguments


@pytest.mark.skipif(cuda_possible(), reason="a CUDA driver is present: the IVIM command rightly asks torch for it")
def test_the_cpu_ivim_fit_does_not_load_torch_where_there_is_no_gpu(phantom_cohort, tmp_path):
    assert not _loads_torch(["ivim", phantom_cohort / "A0001", "--out", tmp_path / "maps", "--threads", "1"])
