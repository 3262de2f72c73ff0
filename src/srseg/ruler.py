"""The ruler: the affinity network that segments every table row, trained per fold, and its thresholds.

Rule train_affinity trains the network on the fold's training specimens (srseg.affinity)
and picks the agglomeration threshold on the real HR of their validation sections
(srseg.segment). Rule row_threshold picks each row's own threshold on that row's output
for the same validation sections: every (model, training data) super-resolves them and
the threshold that segments its own output best is the one its test scores use. No
network was trained on those sections (data.validation_sections, shared by SR and
affinity training), and the test specimen is never looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import affinity as affinity_net
from .config import section
from .data import validation_sections
from .infer import load_sr_model, super_resolve
from .io import InputError, read_image, read_json, read_labels, write_json
from .log import get_logger
from .ruler_spec import offsets
from .runtime import resolve_device, set_threads
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
    validation: dict | None = None,
) -> None:
    """Snakemake entry point of rule train_affinity (one fold).

    Trains the network (`affinity.train_affinity_network`; with `affinity.model` the lab's own
    network is used instead, untrained), then segments the held-back validation sections at
    every threshold and fragment candidate of `segmentation` and writes the combination with
    the lowest mean VOI sum to threshold.json (`best_threshold`, `fragments`): the test
    specimen is never looked at.
    """
    kind = affinity_net.train_affinity_network(
        hr, labels, model, log_csv, train_json, affinity, seed, device, threads, log, validation=validation
    )
    predict: Callable[[np.ndarray], np.ndarray] = lambda img: affinity_net.predict(  # noqa: E731
        kind.model, img, kind.device, affinity
    )
    seg = section("segmentation", segmentation)
    choice = choose_threshold(
        predict,
        kind.validation,
        seg["thresholds"],
        dim=kind.dim,
        merge_function=seg["merge_function"],
        segmentation=seg,
        offsets=kind.model.offsets,
    )
    choice["validation_sections"] = dict(kind.specimens)
    choice["ruler"] = {
        "trained": not affinity.get("model"),
        "model": affinity.get("model"),
        "offsets": offsets(affinity),
    }
    get_logger("srseg.ruler", log).info(
        "best on validation: threshold %s, fragments %s", choice["best_threshold"], choice["fragments"]
    )
    write_json(threshold_json, choice)


def run_row_threshold(
    lr: Sequence[str],
    labels: Sequence[str],
    pairs: Sequence[str],
    affinity_model: str,
    out_json: str,
    model: str | None = None,
    arch_spec: dict | None = None,
    validation: dict | None = None,
    segmentation: dict | None = None,
    infer: dict | None = None,
    device: str = "auto",
    threads: int | None = 1,
    log: str | None = None,
) -> dict:
    """Snakemake entry point of rule row_threshold (one row of one fold): its own agglomeration threshold.

    `lr`, `labels`, `pairs`: the fold's labelled training specimens (paired LR, paired labels,
    pairs.json); `model` the row's model.pt (or `arch_spec` for an untrained baseline).
    Super-resolves only their validation sections (2.5D models read the neighbours), segments
    them with the fold's affinity network at every threshold and writes threshold.json's
    format (best_threshold, scores, per_specimen, validation_sections) to `out_json`.
    """
    logger = get_logger("srseg.ruler", log)
    set_threads(threads)
    dev = resolve_device(device)
    fraction = section("validation", validation)["fraction"]
    seg = section("segmentation", segmentation)
    tiles = section("infer", infer)
    net = affinity_net.load_affinity_model(affinity_model, dev)
    p = net.params
    validation_sets, ranges = {}, {}
    sr_model, scale, _ = load_sr_model(model, arch_spec, None, read_json(pairs[0]), pairs[0])
    for lr_path, lab_path, pairs_json in zip(lr, labels, pairs):
        if int(read_json(pairs_json)["scale"]) != scale:
            raise InputError(
                f"{pairs_json}: scale differs from {pairs[0]}'s ({scale}); pair every specimen at one scale"
            )
        vol, _, _ = read_image(lr_path)
        truth, _ = read_labels(lab_path)
        _, val = validation_sections(vol.shape[0], fraction)
        sr = super_resolve(
            sr_model,
            vol,
            scale,
            tiles["tile"],
            tiles["overlap"],
            tiles["batch"],
            dev,
            tiles["amp"],
            progress=False,
            noise_seed=tiles["seed"],
            sections=(val.start, val.stop),
        )
        name = Path(lr_path).parent.name
        validation_sets[name] = (sr, truth[val])
        ranges[name] = [val.start, val.stop]
        logger.info("%s: validation sections %d..%d super-resolved", name, val.start, val.stop)

    def predict(img: np.ndarray) -> np.ndarray:
        return affinity_net.predict(net, img, dev, p)

    choice = choose_threshold(
        predict,
        validation_sets,
        seg["thresholds"],
        dim=net.dim,
        merge_function=seg["merge_function"],
        segmentation=seg,
        offsets=net.offsets,
    )
    choice["validation_sections"] = ranges
    logger.info(
        "best on this row's own validation output: threshold %s, fragments %s",
        choice["best_threshold"],
        choice["fragments"],
    )
    write_json(out_json, choice)
    return choice
