"""Config you can trust: one schema with every default, strict at every depth, checked before any job.

Every misconfiguration below must fail at `snakemake -n` time, with the full dotted key at
the start of the message's first line, and leave nothing under results/.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from helpers import CONFIGS, ROOT, run_snakemake

from srseg import config as C
from srseg.config import catalog, schema
from srseg.io import InputError

DEMO = yaml.safe_load((ROOT / "config.yaml").read_text())


def write_stack(path: Path, shape, voxel_nm) -> str:
    vz, vy, vx = voxel_nm
    tifffile.imwrite(
        path,
        (np.random.default_rng(0).random(shape) * 255).astype(np.uint8),
        imagej=True,
        resolution=(1e3 / vx, 1e3 / vy),
        metadata={"axes": "ZYX", "spacing": vz / 1e3, "unit": "um"},
    )
    return path.name


def own_specimen(tmp: Path, name: str, hr_shape=(4, 64, 64), lr_shape=(4, 40, 40), offset=(0, 300, 300)) -> dict:
    """A user specimen of real files: LR at 33 nm, HR at 10 nm, HR field inside LR by default."""
    return {
        "lr": write_stack(tmp / f"{name}_lr.tif", lr_shape, (50, 33, 33)),
        "hr": write_stack(tmp / f"{name}_hr.tif", hr_shape, (50, 10, 10)),
        "labels": write_stack(tmp / f"{name}_hr.tif", hr_shape, (50, 10, 10)),
        "hr_offset_nm": list(offset),
    }


def fake_checkpoint(path: Path, arch: str) -> str:
    torch = pytest.importorskip("torch")
    torch.save({"arch": arch, "net": {}, "scale": 3, "state_dict": {"w": torch.zeros(2)}}, path)
    return path.name


def setter(*keys, value):
    def apply(cfg, tmp):
        d = cfg
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value

    return apply


def models(**entries):
    """Replace the default models by these entries (plus edsr/emsr/bicubic of the defaults)."""

    def apply(cfg, tmp):
        cfg["models"] = {**copy.deepcopy(C.defaults()["models"]), **entries}

    return apply


def model_key(model, key, value):
    def apply(cfg, tmp):
        cfg["models"] = copy.deepcopy(C.defaults()["models"])
        cfg["models"][model][key] = value

    return apply


def pop_model_key(model, key):
    def apply(cfg, tmp):
        cfg["models"] = copy.deepcopy(C.defaults()["models"])
        cfg["models"][model].pop(key)

    return apply


def user_specimens(**kw):
    def apply(cfg, tmp):
        cfg["specimens"] = {"own1": own_specimen(tmp, "own1"), "own2": own_specimen(tmp, "own2", **kw)}

    return apply


def with_init(arch_in_file):
    def apply(cfg, tmp):
        cfg["models"] = copy.deepcopy(C.defaults()["models"])
        cfg["models"]["edsr"]["init"] = fake_checkpoint(tmp / "init.pt", arch_in_file)

    return apply


GAN = {"arch": "wgan", "net": {"n_feats": 8, "n_blocks": 1}, "loss": {"l1": 100, "wgan_gp": {"weight": 1}}}

# (id, change of the demo config, dotted key the message must start with)
MISCONFIGURATIONS = [
    ("nested typo in a model", model_key("srcnn", "stpes", 10), "models.srcnn.stpes"),
    ("typo lr_halve_evry", model_key("srcnn", "lr_halve_evry", 5), "models.srcnn.lr_halve_evry"),
    ("typo under training", setter("training", "chekpoint_every", value=5), "training.chekpoint_every"),
    ("typo under affinity", setter("affinity", "stesp", value=5), "affinity.stesp"),
    (
        "typo in a recipe",
        setter("degradations", "bicubic", value={"kind": "bicubic", "blur_sigm": 3}),
        "degradations.bicubic.blur_sigm",
    ),
    (
        "key of another recipe kind",
        setter("degradations", "bicubic", value={"kind": "bicubic", "noise_gain": 0.1}),
        "degradations.bicubic.noise_gain",
    ),
    ("typo in augment", setter("affinity", "augment", value={"nosie": 0.1}), "affinity.augment.nosie"),
    ("top-level typo", setter("modles", value={}), "modles"),
    ("specimen typo", setter("specimens", "alpha", value={"phantm": {"seed": 1}}), "specimens.alpha.phantm"),
    ("missing loss", pop_model_key("srcnn", "loss"), "models.srcnn.loss"),
    ("unknown net key", model_key("edsr", "net", {"n_feat": 3}), "models.edsr.net.n_feat"),
    ("unknown optimizer", model_key("edsr", "optimizer", "adma"), "models.edsr.optimizer"),
    ("init file missing", model_key("edsr", "init", "nope.pt"), "models.edsr.init"),
    ("init of another arch", with_init("srcnn"), "models.edsr.init"),
    ("unknown merge function", setter("segmentation", "merge_function", value="meen"), "segmentation.merge_function"),
    (
        "bad C++ scoring type",
        setter("segmentation", "merge_function", value="OneMinus<MeanAfinity<RegionGraphType, ScoreValue>>"),
        "segmentation.merge_function",
    ),
    ("context on a one-section arch", model_key("emsr", "context", 1), "models.emsr.context"),
    ("GAN key on a CNN", model_key("edsr", "n_critic", 5), "models.edsr.n_critic"),
    ("GAN without adversarial loss", models(wgan={**GAN, "loss": {"l1": 1}}), "models.wgan.loss"),
    (
        "adversarial loss on a CNN",
        model_key("edsr", "loss", {"l1": 1, "wgan_gp": {"weight": 1}}),
        "models.edsr.loss.wgan_gp",
    ),
    ("unknown critic key", models(wgan={**GAN, "critic": {"chanels": [8]}}), "models.wgan.critic.chanels"),
    ("model-aware loss on diffusion", models(sr3={"arch": "sr3", "loss": {"emsr": {"l1": 1}}}), "models.sr3.loss.emsr"),
    ("unknown arch", model_key("edsr", "arch", "edsrr"), "models.edsr.arch"),
    ("unknown loss", model_key("edsr", "loss", {"l3": 1}), "models.edsr.loss.l3"),
    ("unknown loss option", model_key("emsr", "loss", {"emsr": {"lamdas": [1, 1, 1]}}), "models.emsr.loss.emsr.lamdas"),
    ("loss on an untrained arch", model_key("bicubic", "loss", {"l1": 1}), "models.bicubic.loss"),
    ("freeze as a string", model_key("edsr", "freeze", "head."), "models.edsr.freeze"),
    ("reserved model name", models(hr={"arch": "edsr", "loss": {"l1": 1}}), "models.hr"),
    (
        "wrong type",
        setter("specimens", "alpha", value={"phantom": {"seed": 1, "noise": "loud"}}),
        "specimens.alpha.phantom.noise",
    ),
    ("string for a list", setter("segmentation", "thresholds", value="0.5"), "segmentation.thresholds"),
    ("out of range", setter("infer", "tile", value=-4), "infer.tile"),
    ("unknown recipe kind", setter("degradations", "bicubic", value={"kind": "nearest"}), "degradations.bicubic.kind"),
    ("fixed threshold not swept", setter("segmentation", "fixed_threshold", value=0.4), "segmentation.fixed_threshold"),
    ("device", setter("device", value="gpu"), "device"),
    ("unknown training data", setter("train_data", value=["real", "blurnoise"]), "train_data"),
    ("number as text", setter("training", "lr", value="fast"), "training.lr"),
    ("overlap vs tile", setter("infer", "overlap", value=40), "infer.overlap"),
    (
        "unknown specimen in a split",
        setter("splits", value={"f": {"train": ["alpha"], "test": ["alpa"]}}),
        "splits.f.test",
    ),
    ("specimen in train and test", setter("splits", value={"f": {"train": ["alpha"], "test": ["alpha"]}}), "splits.f"),
    ("missing hr", setter("specimens", "own", value={"lr": "config.yaml"}), "specimens.own.hr"),
    (
        "missing file",
        setter("specimens", "own", value={"lr": "raw/none_lr.tif", "hr": "raw/none_hr.tif", "hr_offset_nm": [0, 0, 0]}),
        "specimens.own.lr",
    ),
    ("example specimen", setter("report", "example_specimen", value="zeta"), "report.example_specimen"),
    ("single-section stack", user_specimens(hr_shape=(1, 64, 64), lr_shape=(1, 40, 40)), "specimens.own2"),
    ("HR field larger than LR", user_specimens(hr_shape=(4, 160, 160)), "specimens.own2.hr_offset_nm"),
    ("HR field outside LR", user_specimens(offset=(0, 900, 0)), "specimens.own2.hr_offset_nm"),
    (
        "simulate without labels",
        setter("specimens", "sim", value={"simulate": {"source": "config.yaml", "lr_voxel_nm": [50, 16, 16]}}),
        "specimens.sim.simulate.labels",
    ),
    ("affinity init missing", setter("affinity", "init", value="ruler.pt"), "affinity.init"),
    (
        "training key with a lab's own ruler",
        setter("affinity", value={"model": "lab_ruler.pt", "steps": 50}),
        "affinity.steps",
    ),
    (
        "small-component cleaning of instance labels",
        setter(
            "specimens",
            "sim",
            value={
                "simulate": {
                    "source": "config.yaml",
                    "labels": "config.yaml",
                    "lr_voxel_nm": [50, 16, 16],
                    "labels_min_area_nm2": 100,
                }
            },
        ),
        "specimens.sim.simulate.labels_min_area_nm2",
    ),
    ("blocks vs sections", setter("infer", "blocks_z", value=20), "infer.blocks_z"),
    (
        "empty segmentation block",
        setter("segmentation", "blockwise", value={"block": [0, 64, 64]}),
        "segmentation.blockwise.block",
    ),
    (
        "blockwise context below the long-range offsets",
        setter("segmentation", "blockwise", value={"block": [4, 256, 256], "context": [0, 4, 4]}),
        "segmentation.blockwise.context",
    ),
]


def bad_config(tmp: Path, change) -> dict:
    cfg = copy.deepcopy(DEMO)
    change(cfg, tmp)
    return cfg


@pytest.mark.parametrize("name, change, key", MISCONFIGURATIONS, ids=[m[0] for m in MISCONFIGURATIONS])
def test_misconfiguration_names_its_dotted_key(tmp_path, name, change, key):
    with pytest.raises(InputError) as err:
        C.resolve(bad_config(tmp_path, change), tmp_path)
    first = str(err.value).splitlines()[0]
    assert first.startswith(key + ":") or first.startswith(key + "."), first
    assert len(str(err.value).splitlines()) == 1 and len(first) < 400  # one sentence, not a schema dump


def _plan(tmp: Path, cfg: dict) -> subprocess.CompletedProcess:
    (tmp / "bad.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run_snakemake(tmp, "-n", config=tmp / "bad.yaml", check=False)


def test_every_misconfiguration_fails_at_plan_time_before_any_job(tmp_path):
    """Through snakemake -n: the sentence (dotted key first) right under Snakemake's error header, no results/."""
    dirs = []
    for i, (_, change, _) in enumerate(MISCONFIGURATIONS):
        d = tmp_path / f"case{i}"
        d.mkdir()
        dirs.append((d, bad_config(d, change)))
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda a: _plan(*a), dirs))
    for (name, _, key), (d, _), proc in zip(MISCONFIGURATIONS, dirs, procs):
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, name
        lines = out.splitlines()
        header = next(i for i, line in enumerate(lines) if re.match(r"^InputError in file", line))
        assert lines[header + 1].startswith(key), f"{name}: {lines[header + 1]!r}"
        assert not (d / "results").exists(), name
        assert len(out.splitlines()) < 15, f"{name}: {len(lines)} lines"


def test_a_job_time_input_error_reaches_the_console_as_one_line(tmp_path):
    """Bad input only ingest can see (pixels): the console shows `InputError: <sentence>`, not only the log."""
    cfg = {"specimens": {"own1": own_specimen(tmp_path, "own1"), "own2": own_specimen(tmp_path, "own2")}}
    tifffile.imwrite(
        tmp_path / "own2_hr.tif",
        np.full((4, 64, 64), 7, np.uint8),
        imagej=True,
        resolution=(100, 100),
        metadata={"axes": "ZYX", "spacing": 0.05, "unit": "um"},
    )
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(
        tmp_path, "results/ingest/own2/meta.json", "--cores", "1", config=tmp_path / "c.yaml", check=False
    )
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("InputError: ")]
    assert lines and "constant" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "results/ingest/own2/meta.json").exists()


# ------------------------------------------------------------------- one source of truth


def test_every_key_has_a_description_and_objects_are_closed():
    for key, sch, _ in schema.leaves():
        assert sch.get("description"), f"{key} has no description"

    def closed(sch, path=()):
        sch = schema.deref(sch)
        if "properties" in sch and path[-1:] not in (("degradations",), ("denoise",)) and "allOf" not in sch:
            assert sch.get("additionalProperties") is False, f"{'.'.join(path)} accepts unknown keys"
        for k, sub in sch.get("properties", {}).items():
            closed(sub, path + (k,))
        if isinstance(sch.get("additionalProperties"), dict):
            closed(sch["additionalProperties"], path + ("*",))
        for part in sch.get("allOf", []):
            if "then" in part:
                assert part["then"].get("additionalProperties") is False, f"{'.'.join(path)} branch is open"

    closed(schema.load_schema())


def test_no_default_lives_in_python_code():
    for path in (ROOT / "src" / "srseg").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^[A-Z_]*DEFAULTS\s*=", text, re.M), f"{path} holds a DEFAULTS dict"
    for path in list((ROOT / "rules").glob("*.smk")) + list((ROOT / "workflow" / "scripts").glob("*.py")):
        assert "config.get(" not in path.read_text(), f"{path} reads config with a fallback default"


def test_demo_config_holds_only_what_differs():
    defaults = C.defaults()
    for key, value in DEMO.items():
        if key != "specimens":
            assert C.normalise({key: value})[key] != defaults[key], f"config.yaml repeats the default of {key}"
    # the demo is the defaults but for its 3D ruler (config.yaml says why)
    assert set(DEMO) <= {"specimens", "affinity"} and set(DEMO.get("affinity", {})) <= {"dim"}


TEST_CONFIGS = sorted(CONFIGS.glob("*.yaml"))
EXAMPLE_CONFIGS = [ROOT / "config" / "isbi.yaml", ROOT / "config" / "zoo.yaml", *TEST_CONFIGS]


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_configs_hold_only_their_differences(path):
    cfg = yaml.safe_load(path.read_text())
    name = path.name
    defaults = C.defaults()
    for key, value in cfg.items():
        if key in ("specimens", "models"):
            continue
        if isinstance(value, dict) and isinstance(defaults.get(key), dict) and key != "degradations":
            for sub, v in value.items():
                assert C.normalise({key: {sub: v}})[key][sub] != defaults[key][sub], f"{name} repeats {key}.{sub}"
        else:
            assert C.normalise({key: value})[key] != defaults[key], f"{name} repeats {key}"


@pytest.mark.parametrize("path", TEST_CONFIGS, ids=lambda p: p.name)
def test_test_configs_resolve(path):
    resolved = C.resolve(yaml.safe_load(path.read_text()), ROOT)
    assert resolved["specimens"] and resolved["models"]


def test_test_configs_live_in_one_folder():
    """Every config a test runs lives in tests/configs, and the SLURM test copies one of them."""
    assert TEST_CONFIGS, f"no config in {CONFIGS}"
    stray = [p for p in (ROOT / "tests").rglob("*.y*ml") if p.parent != CONFIGS]
    assert not stray, f"test configs outside {CONFIGS}: {stray}"
    script = (ROOT / "tests" / "slurm" / "run_slurm_test.sh").read_text()
    named = re.findall(r'^CONFIG="\$REPO/(tests/configs/[\w.]+)"', script, re.M)
    assert len(named) == 1 and (ROOT / named[0]).is_file(), named


def test_readme_key_table_matches_the_schema():
    readme = (ROOT / "README.md").read_text()
    table = C.schema.markdown_table()
    assert table in readme, "README's config key table is out of date: paste `python -m srseg.config` into it"


def test_readme_shows_the_demo_config_that_runs_the_demo():
    readme = (ROOT / "README.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    assert DEMO in blocks, "README's minimal demo config differs from config.yaml"


def test_layered_defaults_equal_an_explicit_config():
    defaults = C.defaults()
    explicit = {**defaults, "specimens": DEMO["specimens"], "affinity": {**defaults["affinity"], **DEMO["affinity"]}}
    explicit = C.resolve(explicit)
    assert C.resolve(DEMO) == explicit


# ------------------------------------------------------------------- canonical params


def _sorted_deep(value):
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value, reverse=True)}
    return value


def test_params_do_not_depend_on_key_order_or_number_spelling():
    cfg = copy.deepcopy(DEMO)
    cfg["training"] = {"lr": 0.001, "steps": 300}
    other = _sorted_deep(copy.deepcopy(cfg))
    other["training"] = {"steps": 300.0, "lr": "1e-3"}  # YAML 1.1 reads 1e-3 as text
    a, b = C.resolve(cfg), C.resolve(other)
    assert repr(C.model_settings(a, "edsr")) == repr(C.model_settings(b, "edsr"))
    assert repr(C.canonical(a)) == repr(C.canonical(b))


def test_command_line_booleans_are_booleans():
    """`--config overview={segment_jobs: true}` gives Snakemake's text 'true'; the schema reads it as a boolean."""
    cfg = copy.deepcopy(DEMO)
    cfg["overview"] = {"segment_jobs": "true", "blocks_z": "2"}
    ov = C.resolve(cfg)["overview"]
    assert ov["segment_jobs"] is True and ov["blocks_z"] == 2
    cfg["overview"] = {"segment_jobs": "no"}
    with pytest.raises(InputError, match="segment_jobs"):
        C.resolve(cfg)


def test_writing_out_a_default_is_the_same_model():
    a = C.resolve(DEMO)
    cfg = copy.deepcopy(DEMO)
    cfg["models"] = copy.deepcopy(C.defaults()["models"])
    cfg["models"]["edsr"]["net"]["res_scale"] = 1.0  # the arch's own default
    cfg["models"]["edsr"]["freeze"] = []
    assert C.model_settings(a, "edsr") == C.model_settings(C.resolve(cfg), "edsr")


def test_model_slice_holds_only_the_keys_its_kind_uses():
    cfg = copy.deepcopy(DEMO)
    cfg["models"] = {**C.defaults()["models"], "wgan": GAN}
    cfg["training"] = {"n_critic": 3}
    resolved = C.resolve(cfg)
    assert "n_critic" not in C.model_settings(resolved, "edsr")
    assert C.model_settings(resolved, "wgan")["n_critic"] == 3
    assert C.model_settings(resolved, "bicubic") == {"arch": "bicubic", "net": {}}


# ------------------------------------------------------------------- code digests


def test_a_reference_made_from_labels_does_not_follow_the_segmentation_code():
    """Rule reference carries srseg.reference's digest: editing srseg/segment.py re-segments every row
    but leaves the references of labelled specimens, and so every row's scores against them, alone."""
    from srseg.config import digest

    closure = digest.closure("srseg.reference")
    assert "srseg.segment" not in closure and "srseg.affinity" not in closure
    assert "srseg.io" in closure and "srseg.metrics" in closure
    rule = (ROOT / "rules" / "segment.smk").read_text().split("rule reference:")[1].split("\nrule ")[0]
    assert 'code("srseg.reference")' in rule and "srseg.segment" not in rule


def test_code_digest_follows_the_code_a_rule_runs(tmp_path, monkeypatch):
    from srseg.config import digest

    arch = catalog.archs()
    assert "srseg.models.edsr_arch" not in digest.closure("srseg.infer")  # archs are found at run time
    assert "srseg.models.common" in digest.closure(arch["edsr"].module)
    assert "srseg.config" not in " ".join(digest.closure("srseg.infer"))
    edsr, srcnn = (
        digest.code_digest("srseg.infer", arch["edsr"].module),
        digest.code_digest("srseg.infer", arch["srcnn"].module),
    )
    original = arch["edsr"].path.read_bytes()
    edited = {arch["edsr"].path: original.replace(b"res_scale: float = 1.0", b"res_scale: float = 0.5")}
    docs = {arch["edsr"].path: original.replace(b'"""', b'"""An edited docstring. ', 1) + b"\n# a comment\n"}
    monkeypatch.setattr(digest, "CACHE", tmp_path / "cache.json")
    for files, changes in ((edited, True), (docs, False)):
        monkeypatch.setattr(
            digest.Path, "read_bytes", lambda self, _f=files, _r=Path.read_bytes: _f.get(self) or _r(self)
        )
        for fn in (digest._analysis, digest.code_digest, digest._cache):
            fn.cache_clear()
        assert (digest.code_digest("srseg.infer", arch["edsr"].module) != edsr) is changes
        assert digest.code_digest("srseg.infer", arch["srcnn"].module) == srcnn
        monkeypatch.setattr(digest.Path, "read_bytes", Path.read_bytes)
    for fn in (digest._analysis, digest.code_digest, digest._cache):
        fn.cache_clear()


# ------------------------------------------------------------------- light planning


def test_planning_imports_neither_torch_nor_opencv():
    code = (
        "import sys, yaml; from srseg import config as C; "
        f"C.resolve(yaml.safe_load(open({str(ROOT / 'config.yaml')!r}))); "
        "from srseg.config import digest, catalog;"
        " digest.code_digest('srseg.training', 'srseg.infer'); catalog.archs(); "
        "bad = [m for m in ('torch', 'cv2', 'waterz', 'skimage', 'matplotlib') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize(
    "context, dim, long_range, weight",
    [
        ([0, 8, 8], 2, [[0, -6, 0]], 0.5),
        ([0, 4, 8], 2, [[0, -6, 0]], 0.5),
        ([0, 4, 8], 2, [[0, -6, 0]], 0.0),
        ([0, 8, 8], 3, [], 0.5),
        ([1, 0, 8], 2, [], 0.5),
        ([1, 8, 8], 3, [[-2, 0, 0]], [0, 0.5]),
    ],
)
def test_blockwise_plan_check_refuses_what_blockwise_refuses(context, dim, long_range, weight):
    """The plan-time check (torch- and waterz-free) has srseg.blockwise.check_context's rules."""
    from srseg import blockwise
    from srseg.config.checks import blockwise_problem
    from srseg.ruler_spec import NEAREST

    problem = blockwise_problem([4, 64, 64], context, dim, long_range, weight)
    w = max(weight) if isinstance(weight, list) else weight
    try:
        blockwise.check_context(context, dim, NEAREST + long_range, w)
        refused = False
    except ValueError:
        refused = True
    assert (problem is not None) == refused, problem
    assert problem is None or problem[0] == "segmentation.blockwise.context"


def test_an_ome_zarr_lr_overview_is_a_workflow_input(tmp_path):
    """specimens.*.lr may be an OME-Zarr: the DAG tracks the .zarr folder and ingest writes the same lr.tif."""
    from srseg.volumes import write_ome_zarr

    specimens = {name: own_specimen(tmp_path, name) for name in ("own1", "own2")}
    lr = tifffile.imread(tmp_path / "own1_lr.tif")
    write_ome_zarr(tmp_path / "own1_lr.zarr", lr, [50.0, 33.0, 33.0])
    specimens["own1"]["lr"] = "own1_lr.zarr"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"specimens": specimens}))
    out = "results/ingest/own1/lr.tif"
    run_snakemake(tmp_path, out, "--cores", "1", config=tmp_path / "c.yaml")
    assert np.array_equal(tifffile.imread(tmp_path / out), lr)
