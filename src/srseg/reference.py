"""The labels a test specimen is scored against (rule reference): its own labels, or real HR segmented by the ruler.

A module of its own, apart from srseg.segment, so that the rule's code digest is only this
copying and checking: editing the segmentation code re-segments every row, but does not
re-make a specimen's reference from its labels (and so re-score every row against it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import runtime
from .io import InputError, read_json, read_labels, write_json, write_labels
from .metrics import labels_are_3d


def run_reference(
    output: str,
    output_json: str,
    labels: str | None = None,
    threshold_json: str | None = None,
    segmentations: Sequence[str] = (),
    thresholds: Sequence[float] = (),
    log: str | None = None,
) -> None:
    """Snakemake entry point of rule reference: the labels the test specimen is scored against.

    With `labels` (the specimen has them): those labels, checked. Otherwise the
    HR segmentation (row `hr`) at the threshold chosen on validation data
    (threshold.json): the segmentation of real HR by the same network, as in
    the Chalmers study; the json says which source was used and whether the labels
    are 3D (`labels_3d`: an ID occurs in two or more sections).
    """
    logger = runtime.get_logger("srseg.reference", log)
    if labels:
        lab, voxel = read_labels(labels)
        if not np.any(lab):
            raise InputError(
                f"{labels}: labels are all background (0); give instance labels with at least one cell "
                "or set labels: null"
            )
        meta = {"source": "labels", "path": str(labels), "threshold": None}
    else:
        if threshold_json is None:
            raise InputError(
                "rule reference: neither labels nor threshold.json given; give the specimen labels "
                "or train the affinity network"
            )
        best = float(read_json(threshold_json)["best_threshold"])
        by_t = {float(t): p for t, p in zip(thresholds, segmentations)}
        if best not in by_t:
            raise InputError(
                f"{threshold_json}: best threshold {best} is not among segmentation.thresholds "
                f"{list(by_t)}; rerun train_affinity"
            )
        lab, voxel = read_labels(by_t[best])
        meta = {
            "source": "hr_segmentation",
            "path": str(by_t[best]),
            "threshold": best,
            "threshold_json": str(threshold_json),
        }
    meta["segments"] = int(len(np.unique(lab)) - (0 in lab))
    # 3D labels (an ID in two or more sections) make seg_metrics score whole volumes (scores_in_3d)
    meta["labels_3d"] = labels_are_3d(lab)
    write_labels(output, lab, voxel)
    write_json(output_json, meta)
    logger.info("reference %s from %s", output, meta["source"])
