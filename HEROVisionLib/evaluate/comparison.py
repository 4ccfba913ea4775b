"""``herovision evaluate --compare``: a survival package against what a site would otherwise use —
its nomogram, the clinical-factor model, the six guideline staging systems, and each staging system
with the HEROVision score added (the paper's Table 2 and Fig. 4e–h). The comparators' coefficients
come from the package (fitted on its training cohort), never from the cohort being evaluated, so
nothing is fitted on the patients it is judged on. Statistics: :mod:`HEROVisionLib.stats.predictor_comparison`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io.images import write_text_atomic
from ..plots import pyplot
from ..staging import SYSTEMS, staging_ordinals
from ..stats.predictor_comparison import HORIZONS_MONTHS, TRUNCATION_MONTHS, compare_predictors


def _linear_predictor(block: dict, clinical: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
    """Σ β·x of a Cox block on each patient; NaN where a covariate is blank."""
    values = clinical.assign(risk_score=scores)
    total = np.zeros(len(values))
    for name, coefficient in block["coefficients"].items():
        column = values[name] if name in values.columns else pd.Series(np.nan, index=values.index)
        total = total + coefficient * pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    return total


def comparison_predictors(package, clinical: pd.DataFrame, scores: np.ndarray) -> tuple[dict, dict]:
    """(name → values per patient, higher = higher risk, NaN where not computable; name → why a
    comparator the package does not carry is absent)."""
    block = package.herovision
    predictors, absent = {package.name: scores}, {}
    for key, label in (("nomogram", "Nomogram"), ("clinical_model", "Clinical model")):
        model = block.get(key) or {"unavailable": "not in this package (trained before it was recorded)"}
        if "coefficients" in model:
            predictors[label] = _linear_predictor(model, clinical, scores)
        else:
            absent[label] = model["unavailable"]
    ordinals = staging_ordinals(clinical)
    staging_models = block.get("staging_models", {})
    for system in SYSTEMS:
        predictors[system] = ordinals[system].to_numpy()
    for system in SYSTEMS:
        model = staging_models.get(system, {"unavailable": "not in this package (trained before it was recorded)"})
        if "coefficients" in model:
            stage = model["coefficients"]
            predictors[f"{system} + {package.name}"] = (stage["stage"] * ordinals[system].to_numpy()
                                                        + stage["risk_score"] * scores)
        else:
            absent[f"{system} + {package.name}"] = model["unavailable"]
    return predictors, absent


def compare_package(package, clinical: pd.DataFrame, scores, time, event, stage: Path, *, n_boot: int,
                    seed: int) -> dict:
    """The comparison table (``comparison.csv``) and figure (``comparison.png``) in ``stage``; returns
    the table as records and the comparators left out, for metrics.json and the model card."""
    predictors, absent = comparison_predictors(package, clinical, np.asarray(scores, dtype=np.float64))
    table = compare_predictors(predictors, package.name, time, event, n_boot=n_boot, seed=seed)
    write_text_atomic(table.to_csv(index=False), stage / "comparison.csv")
    _plot_comparison(table, stage / "comparison.png", package.name)
    return {"truncation_months": TRUNCATION_MONTHS, "bootstrap_resamples": n_boot,
            "p_values": "ΔC: paired bootstrap (two-sided percentile test); AUC: DeLong's test",
            "table": table.replace({np.nan: None}).to_dict(orient="records"), "left_out": absent,
            "markdown": comparison_lines(table, absent)}


def comparison_lines(table: pd.DataFrame, absent: dict) -> list[str]:
    """The comparison as a Markdown table (console and model card): C with CI, difference and P,
    2-year AUC with DeLong P; a predictor without a C says why; comparators left out are listed."""
    tau = f"{TRUNCATION_MONTHS:g}"
    lines = [f"| predictor | patients | C, {tau} months (95 % CI) | ΔC | P | AUC at {tau} months | DeLong P |",
             "|---|---|---|---|---|---|---|"]
    for row in table.replace({np.nan: None}).to_dict(orient="records"):
        if row.get("c_index") is None:
            lines.append(f"| {row['predictor']} | {row['patients']} | {row['note']} | | | | |")
            continue
        cells = [f"{row['c_index']:.3f} ({row['c_index_lower']:.3f}–{row['c_index_upper']:.3f})",
                 _number(row.get("c_difference"), "{:+.3f}"), _number(row.get("c_difference_p"), "{:.3g}"),
                 _number(row.get(f"auc_{tau}m"), "{:.3f}"), _number(row.get("auc_delong_p"), "{:.3g}")]
        lines.append(f"| {row['predictor']} | {row['patients']} | " + " | ".join(cells) + " |")
    return lines + [f"- {name}: left out, {why}" for name, why in absent.items()]


def _number(value, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def _plot_comparison(table: pd.DataFrame, path: Path, reference: str) -> None:
    """Left: the truncated C with its interval per predictor; right: the time-dependent AUC of the
    reference, the clinical model and the staging systems (the paper's Fig. 4 panels)."""
    plt = pyplot()
    shown = table[table["c_index"].notna()] if "c_index" in table else table.iloc[:0]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 0.35 * len(table) + 2.5))
    positions = np.arange(len(shown))[::-1]
    left.errorbar(shown["c_index"], positions, xerr=[shown["c_index"] - shown["c_index_lower"],
                                                     shown["c_index_upper"] - shown["c_index"]], fmt="o", capsize=3)
    left.set_yticks(positions, shown["predictor"])
    left.axvline(0.5, color="grey", linewidth=0.8)
    left.set_xlabel(f"Harrell C, truncated at {TRUNCATION_MONTHS:g} months (95 % CI)")
    for _, row in shown.iterrows():
        if "+" in row["predictor"]:
            continue
        aucs = [row.get(f"auc_{h:g}m", np.nan) for h in HORIZONS_MONTHS]
        right.plot(HORIZONS_MONTHS, aucs, marker="o", label=row["predictor"],
                   linewidth=2.5 if row["predictor"] == reference else 1.2)
    right.set_xlabel("months")
    right.set_ylabel("time-dependent AUC")
    right.set_ylim(0.4, 1.0)
    right.legend(fontsize=8)
    figure.suptitle(f"{reference} against the clinical model and the staging systems")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
