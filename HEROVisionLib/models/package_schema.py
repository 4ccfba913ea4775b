"""The JSON Schema of a package's ``configs/metadata.json``: what every key the loader and the
prediction read must hold, checked (with ``jsonschema``) before any network is built, so a missing
cutoff or a negative dimension is one clear error naming the key, not a traceback deep in torch."""

from __future__ import annotations

from ..errors import InputError
from ..io.clinical import TREATMENTS

_NUMBER = {"type": "number"}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_NON_NEGATIVE = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 1}
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
_SURVIVAL_MODALITIES = ["t2wi", "dwi", "us", "ceus"]


def _object(properties: dict, required=None, **extra) -> dict:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, **extra}


_LOGISTIC = _object({"intercept": _NUMBER, "coefficients": {"type": "object", "additionalProperties": _NUMBER}})

_NOMOGRAM = {"oneOf": [
    _object({"unavailable": {"type": "string"}}),
    _object({"coefficients": {"type": "object", "additionalProperties": _NUMBER, "minProperties": 1},
             "lowest_contribution": {"type": "object", "additionalProperties": _NUMBER},
             "points_scale": _POSITIVE,
             "horizons": {"type": "array", "items": _POSITIVE, "minItems": 1},
             "baseline_cumulative_hazard": {"type": "array", "items": _NON_NEGATIVE, "minItems": 1},
             "risk_cutoff": _NUMBER}),
]}

_SURVIVAL_NETWORK = _object({
    "modality_images": {"type": "object", "minProperties": 1, "additionalProperties": False,
                        "properties": {m: _COUNT for m in _SURVIVAL_MODALITIES}},
    "encoder": {"type": "object", "properties": {"mlp_ratio": _POSITIVE, "dropout": _PROBABILITY},
                "additionalProperties": _COUNT},
    "modality_features": _COUNT, "fusion_hidden": _COUNT,
    "modality_dropout": _PROBABILITY, "fusion_dropout": _PROBABILITY}, required=["modality_images"])

_SURVIVAL = _object({
    "treatment": {"enum": list(TREATMENTS)},
    "risk_cutoff": _NUMBER,
    "baseline_cumulative_hazard": _object({months: _NON_NEGATIVE for months in ("12", "24", "36")}),
    "preprocessing": _object({
        "image_size": {"type": "integer", "minimum": 8},
        "us_margins": {"type": "array", "items": _NON_NEGATIVE, "minItems": 1},
        "percentiles": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 100},
                        "minItems": 2, "maxItems": 2},
        "fields_mm": {"type": "object", "additionalProperties": False, "properties": {
            **{m: _POSITIVE for m in ("t2wi", "dwi", "ceus")},
            "us": {"type": "array", "items": _POSITIVE, "minItems": 1}}}}),
    # if/then rather than oneOf, so that a fault is named by its key (oneOf only says no branch fits).
    "architecture": _object({"name": {"enum": ["HEROVisionNet", "HEROVisionEnsemble"]}, "config": {"type": "object"}},
                            allOf=[{"if": {"properties": {"name": {"const": "HEROVisionNet"}}},
                                    "then": {"properties": {"config": _SURVIVAL_NETWORK}}},
                                   {"if": {"properties": {"name": {"const": "HEROVisionEnsemble"}}},
                                    "then": {"properties": {"config": _object({
                                        "members": {"type": "integer", "minimum": 2},
                                        "member": _SURVIVAL_NETWORK})}}}]),
    "nomogram": _NOMOGRAM,
    "clinical_model": _NOMOGRAM,
    "staging_models": {"type": "object", "additionalProperties": {"oneOf": [
        _object({"unavailable": {"type": "string"}}),
        _object({"coefficients": _object({"stage": _NUMBER, "risk_score": _NUMBER}), "patients": _COUNT})]}},
}, required=["treatment", "risk_cutoff", "baseline_cumulative_hazard", "preprocessing", "architecture"])

_HEAD = _object({
    "selected_features": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
    "feature_mean": {"type": "array", "items": _NUMBER},
    "feature_scale": {"type": "array", "items": _POSITIVE},
    "deep": _LOGISTIC, "combined": _LOGISTIC})

_IVIM_NETWORK = {"type": "object", "properties": {"dropout": _PROBABILITY}, "additionalProperties": _COUNT,
                 "required": ["bvalue_channels", "map_channels", "crop_size"]}

_EARLY_RECURRENCE = _object({
    # one head per network: an ensemble's under "members" (if/then/else, so a fault is named by its key)
    "early_recurrence": {"type": "object", "if": {"required": ["members"]},
                         "then": _object({"members": {"type": "array", "items": _HEAD, "minItems": 2}}),
                         "else": _HEAD},
    "preprocessing": _object({
        "crop_size": {"type": "integer", "minimum": 8}, "spacing_mm": _POSITIVE,
        "ivim_method": {"enum": ["full", "segmented"]},
        "map_scales": _object({name: _POSITIVE for name in ("ADC", "D", "Dstar", "f")}),
        "bvalues": {"type": "array", "items": _NON_NEGATIVE, "minItems": 1},
        "bvalue_resampling": {"enum": ["log-linear"]}}, required=[
        "crop_size", "spacing_mm", "ivim_method", "map_scales"]),
    "architecture": _object({"name": {"enum": ["IVIMFeatureNet", "IVIMEnsemble"]}, "config": {"type": "object"}},
                            allOf=[{"if": {"properties": {"name": {"const": "IVIMFeatureNet"}}},
                                    "then": {"properties": {"config": _IVIM_NETWORK}}},
                                   {"if": {"properties": {"name": {"const": "IVIMEnsemble"}}},
                                    "then": {"properties": {"config": _object({
                                        "members": {"type": "integer", "minimum": 2}, "member": _IVIM_NETWORK})}}}]),
})

METADATA_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "version", "herovision"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string", "minLength": 1},
        "herovision": {
            "type": "object",
            "required": ["kind", "trained", "format_version", "architecture", "preprocessing"],
            "properties": {"kind": {"enum": ["survival", "early_recurrence"]}, "trained": {"type": "boolean"},
                           "format_version": {"type": "string", "pattern": r"^\d+\.\d+$"},
                           "acquisition_ranges": {"type": "object", "additionalProperties": {
                               "type": "object", "additionalProperties": {
                                   "type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2}}}},
            "allOf": [
                {"if": {"properties": {"kind": {"const": "survival"}}}, "then": _SURVIVAL},
                {"if": {"properties": {"kind": {"const": "early_recurrence"}}}, "then": _EARLY_RECURRENCE},
            ],
        },
    },
}


def check_metadata(metadata, source) -> None:
    """Refuse metadata that does not follow :data:`METADATA_SCHEMA`, naming every faulty key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(METADATA_SCHEMA)
    errors = sorted(validator.iter_errors(metadata), key=lambda error: list(error.absolute_path))
    if errors:
        problems = [f"{'.'.join(map(str, error.absolute_path)) or 'top level'}: {_shortened(error.message)}"
                    for error in errors]
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError(source, "metadata does not describe a usable model: " + "; ".join(problems[:5]) + more)


def _shortened(message: str) -> str:
    """jsonschema quotes the faulty value whole (a list of hundreds of numbers, say): keep the gist."""
    return message if len(message) <= 160 else message[:157] + "…"
