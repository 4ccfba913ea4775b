"""The same patients acquired by two centres: do the models give them the same scores?

Two phantom cohorts made with one seed under two acquisition profiles (say ``A`` and ``B``) hold the
same patients (PHANTOM.md: case i depends only on (seed, i)). Each package scores both cohorts
exactly as ``herovision evaluate`` does; printed per model: the Pearson and Spearman correlation
of the scores of the same patients across the two centres, and on each centre the model's
discrimination over the oracle's on the same patients (C-index for the survival models, AUC of the
combined model for early recurrence) — the ratio the bundled models' cards quote.

    python bench/centre_agreement_bench.py MODELS_FOLDER COHORT_1 COHORT_2 [--packages IVIM-ER …]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import pearsonr, spearmanr

from HEROVisionLib.io.case import Cohort, read_case_table
from HEROVisionLib.models.ivim_net import ensemble_probabilities, heads_of, networks_of
from HEROVisionLib.models.model_set import PACKAGE_NAMES
from HEROVisionLib.models.package import load_package
from HEROVisionLib.stats import auc_with_delong_ci, harrell_c
from HEROVisionLib.train.data import prepare
from HEROVisionLib.train.early_recurrence import fused_features
from HEROVisionLib.train.survival_training import risk_scores

CPU = torch.device("cpu")


def scores(package, cohort_folder: Path) -> pd.DataFrame:
    """Per patient (by index within the cohort): the score, the outcome and the oracle's score."""
    block = package.herovision
    cohort = Cohort(cohort_folder)
    truth = read_case_table(cohort.folder / "truth.csv").set_index("case_id")
    if block["kind"] == "survival":
        data = prepare(cohort, f"pfs-{block['treatment'].lower()}", block["preprocessing"], progress=False)
        score = risk_scores(package.network, data, CPU)
        oracle = truth.loc[data.case_ids, f"lp_{block['treatment']}"].to_numpy()
        outcome = {"time": data.labels["time"].numpy(), "event": data.labels["event"].numpy().astype(bool)}
    else:
        data = prepare(cohort, "er", block["preprocessing"], progress=False)
        features = [torch.as_tensor(fused_features(network, data, CPU)) for network in networks_of(package.network)]
        score = ensemble_probabilities(heads_of(block["early_recurrence"]), features, data.labels["tumor_size_cm"],
                                       data.labels["tumor_D"])[1].numpy()
        oracle = truth.loc[data.case_ids, "lp_SR"].to_numpy()
        outcome = {"er": data.labels["er"].numpy().astype(int)}
    patient = [int(case_id.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) for case_id in data.case_ids]
    return pd.DataFrame({"patient": patient, "score": score, "oracle": oracle, **outcome}).set_index("patient")


def over_oracle(table: pd.DataFrame) -> float:
    if "time" in table:
        return harrell_c(table["score"], table["time"], table["event"]) / harrell_c(table["oracle"], table["time"],
                                                                                   table["event"])
    return auc_with_delong_ci(table["er"], table["score"]).auc / auc_with_delong_ci(table["er"], table["oracle"]).auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path)
    parser.add_argument("cohorts", type=Path, nargs=2)
    parser.add_argument("--packages", nargs="+", default=list(PACKAGE_NAMES.values()), help="packages to compare")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"{'model':16} {'patients':>8} {'Pearson r':>9} {'Spearman':>9}   discrimination / oracle's on each cohort")
    for name in args.packages:
        package = load_package(args.models / name, "cpu")
        first, second = (scores(package, cohort) for cohort in args.cohorts)
        common = first.index.intersection(second.index)
        a, b = first.loc[common, "score"], second.loc[common, "score"]
        ratios = "  ".join(f"{cohort.name}: {over_oracle(table.loc[common]):.3f}"
                           for cohort, table in zip(args.cohorts, (first, second)))
        print(f"{name:16} {len(common):>8} {pearsonr(a, b)[0]:>9.3f} {spearmanr(a, b)[0]:>9.3f}   {ratios}")


if __name__ == "__main__":
    main()
