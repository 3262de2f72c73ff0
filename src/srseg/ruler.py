"""The ruler: the affinity network that segments every table row, trained per fold, and its threshold.

Rule train_affinity trains the network on the fold's training specimens (srseg.affinity)
and then picks the agglomeration threshold on their held-back validation sections
(srseg.segment): the test specimen is never looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import affinity as affinity_net
from .io import write_json
from .log import get_logger
from .segment import choose_threshold


def run_train_affinity(
    hr: Sequence[str],
    labels: Sequence[str],
    model: str,
    log_csv: str,
    train_json: str,
    threshold_json: str,
    affinity: dict,
    segmentation: dict,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    log: str | None = None,
) -> None:
    """Snakemake entry point of rule train_affinity (one fold).

    Trains the network (`affinity.train_affinity_network`), then segments the held-back validation
    sections at every threshold of `segmentation` (thresholds, seed_min_distance,
    merge_function) and writes the one with the lowest mean VOI sum to threshold.json:
    the test specimen is never looked at.
    """
    kind = affinity_net.train_affinity_network(
        hr, labels, model, log_csv, train_json, affinity, seed, device, threads, log
    )
    predict: Callable[[np.ndarray], np.ndarray] = lambda img: affinity_net.predict_affinities(  # noqa: E731
        kind.model,
        img,
        kind.device,
        int(affinity["tile"]),
        int(affinity["overlap"]),
        int(affinity["batch"]),
        int(affinity["tile_z"]),
    )
    choice = choose_threshold(
        predict,
        kind.validation,
        segmentation["thresholds"],
        seed_min_distance=segmentation["seed_min_distance"],
        dim=kind.dim,
        merge_function=segmentation["merge_function"],
    )
    choice["validation_sections"] = dict(kind.specimens)
    get_logger("srseg.ruler", log).info("best threshold on validation: %s", choice["best_threshold"])
    write_json(threshold_json, choice)
