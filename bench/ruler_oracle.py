"""Where the ruler loses its score on real HR: in the fragments, in the merge order, or in the threshold choice.

    python bench/ruler_oracle.py --results results --config config/isbi.yaml --out results/bench/ruler_oracle.csv

For every fold of a finished run (results/affinity/<fold>/model.pt + threshold.json, the
test specimens' results/pairs/<specimen>/hr.tif and results/reference/<fold>/<specimen>.tif)
the `hr` row is rebuilt from the same affinities as rule segment makes them, with the
fragment settings the validation sections chose, and scored in the tables' unit (per
section or whole volume, `metrics.border_crop` and `segmentation` of the run's config) four ways:

* `oracle`: the fragments merged by `srseg.segment.oracle_agglomeration` (each fragment to
  the truth cell it overlaps most): the best any agglomeration of these fragments can do;
* `chosen`: waterz at the validation-chosen threshold (the `hr` row of the tables);
* `test_best`: waterz at the threshold best on the test specimen itself (F1), which no
  honest choice can beat;
* and the `fragments` themselves, unmerged.

`oracle` far above `test_best` means the affinities order the merges wrongly (a better
network or merge score would help, not other fragments); `test_best` far above `chosen`
means the validation sections choose badly; `oracle` well below 1 means the fragments
already cross cells (seeds, boundary threshold).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from srseg import runtime, segment  # noqa: E402
from srseg.affinity import load_affinity_model, predict  # noqa: E402
from srseg.config import section  # noqa: E402
from srseg.io import read_json, read_labels, write_csv  # noqa: E402
from srseg.metrics import scores_in_3d, unit_scores  # noqa: E402
from srseg.metrics.segmentation import _crop_yx as crop  # noqa: E402  (seg_metrics' own border crop)
from srseg.volumes import read_image  # noqa: E402


def fold_rows(results: Path, fold: str, segmentation: dict, border: int) -> list[dict]:
    """The four scorings (module docstring) of each test specimen of `fold`."""
    net = load_affinity_model(results / "affinity" / fold / "model.pt", "cpu")
    choice = read_json(results / "affinity" / fold / "threshold.json")
    frag = segment.fragment_options(choice["fragments"])
    thresholds = sorted(float(t) for t in segmentation["thresholds"])
    rows = []
    for ref in sorted((results / "reference" / fold).glob("*.tif")):
        specimen = ref.stem
        image, _, _ = read_image(results / "pairs" / specimen / "hr.tif")
        truth, _ = read_labels(ref)
        affs = predict(net, image, torch.device("cpu"), net.params)
        offsets = getattr(net, "offsets", None)
        # the segmentations through rule segment's own call, so the bench cannot drift from it
        with segment.waterz_cache(results / ".." / ".waterz_cache" / "ruler_oracle"):
            segs, _ = segment.segment_affinities(
                affs, thresholds, dim=net.dim, merge_function=segmentation["merge_function"], offsets=offsets, **frag
            )
        # and its fragments once more for the oracle (segment_affinities keeps them to itself)
        nn = segment.fold_long_range(segment.check_affinities(affs), offsets, frag["long_range_weight"])
        fragments = segment.fragments_from_affinities(nn, frag["seed_min_distance"], frag["boundary_threshold"])
        in_3d = scores_in_3d(net.dim, truth)
        t_crop = crop(truth, border)

        def scored(seg, t_crop=t_crop, in_3d=in_3d):
            return unit_scores(crop(seg, border), t_crop, in_3d)

        by_threshold = {t: scored(s) for t, s in segs.items()}
        test_best = max(by_threshold, key=lambda t: by_threshold[t]["f1"])
        chosen = float(choice["best_threshold"])
        ids = {"fold": fold, "specimen": specimen, "in_3d": in_3d, "n_fragments": int(fragments.max()), **frag}
        for name, threshold, scores in [
            ("fragments", None, scored(fragments)),
            ("oracle", None, scored(segment.oracle_agglomeration(fragments, truth))),
            ("chosen", chosen, by_threshold[min(by_threshold, key=lambda t: abs(t - chosen))]),
            ("test_best", test_best, by_threshold[test_best]),
        ]:
            rows.append({**ids, "scoring": name, "threshold": threshold, **scores})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results", help="a finished run's results folder")
    ap.add_argument("--out", required=True, help="csv (one row per fold, specimen and scoring)")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"), help="the run's config (segmentation, metrics)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    runtime.set_threads(a.threads)
    results = Path(a.results)
    config = yaml.safe_load(Path(a.config).read_text()) or {}
    segmentation = section("segmentation", config.get("segmentation"))
    border = int(section("metrics", config.get("metrics"))["border_crop"])
    folds = sorted(p.parent.name for p in (results / "affinity").glob("*/model.pt"))
    if not folds:
        sys.exit(f"{results}/affinity/*/model.pt: no trained ruler; run the workflow first")
    table = pd.DataFrame([row for fold in folds for row in fold_rows(results, fold, segmentation, border)])
    write_csv(a.out, table)
    summary = table.groupby("scoring", sort=False)[["voi_split", "voi_merge", "voi_sum", "f1", "precision", "recall"]]
    print(summary.mean().round(4).to_string())


if __name__ == "__main__":
    main()
