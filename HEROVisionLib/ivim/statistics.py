"""ROI statistics of IVIM maps: what a radiologist reports per tumour (and what models consume)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from ..io.geometry import labels_present, resample_roi_to
from .fit_settings import FLAG_INVALID_SIGNAL

if TYPE_CHECKING:
    import pandas as pd  # loaded only when statistics are asked for

PARAMETERS = ("ADC", "D", "Dstar", "f", "S0", "R2")
STATISTICS_COLUMNS = ("label", "parameter", "count", "mean", "median", "sd", "p10", "p90", "flagged")


def roi_statistics(maps: dict[str, sitk.Image], roi: sitk.Image, roi_source="ROI") -> pd.DataFrame:
    """Per ROI label and parameter: voxel count, mean, median, SD (n − 1), 10th/90th percentiles.

    Voxels without usable signal (flag ``FLAG_INVALID_SIGNAL``) are left out and counted in
    ``flagged``; voxels merely on a bound stay in (they are real, if extreme, values).
    """
    reference = maps["flags"]
    roi = resample_roi_to(roi, reference, roi_source, "IVIM maps")
    labels = sitk.GetArrayViewFromImage(roi)
    invalid = (sitk.GetArrayViewFromImage(reference) & FLAG_INVALID_SIGNAL) != 0
    rows = []
    for label in labels_present(roi):
        in_label = labels == label
        used = in_label & ~invalid
        for parameter in PARAMETERS:
            values = sitk.GetArrayViewFromImage(maps[parameter])[used].astype(np.float64)
            row = {"label": label, "parameter": parameter, "count": int(values.size),
                   "flagged": int((in_label & invalid).sum())}
            if values.size:
                p10, median, p90 = np.percentile(values, [10, 50, 90])
                row.update(mean=values.mean(), median=median, sd=values.std(ddof=1) if values.size > 1 else 0.0,
                           p10=p10, p90=p90)
            rows.append(row)
    import pandas as pd

    return pd.DataFrame(rows, columns=list(STATISTICS_COLUMNS))
