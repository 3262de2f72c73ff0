# srseg: which super-resolution model, trained how, turns low-resolution EM into
# images that segment neurons as well as real high-resolution EM?
#
#   snakemake --cores 2                        # the embedded demo (config.yaml)
#   snakemake --profile profiles/slurm         # on a SLURM GPU cluster
#   snakemake --cores 2 overview               # then: the best row on every whole LR overview
#
# The DAG and the results/ layout are described in README.md.

from snakemake.utils import min_version

min_version("9.0")


# Every key has its default in schemas/config.schema.yaml; a config file holds only what
# differs (rules/common.smk layers it on the defaults and checks it). config.yaml is the
# embedded demo and is read only when no --configfile is given, so your own config never
# picks up the demo's specimens; `--configfile a.yaml b.yaml` layers files left to right.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


# names are one of the config's (a sorted alternation), so no rule mistakes one path for another
wildcard_constraints:
    specimen="|".join(SPECIMENS),
    recipe="|".join(RECIPES) or "__none__",
    model="|".join(MODELS + ["hr"]),
    fold="|".join(FOLDS),
    data="|".join(["real", "none", "denoised"] + RECIPES),
    block=r"\d+",


include: "rules/generate.smk"
include: "rules/ingest.smk"
include: "rules/align.smk"
include: "rules/pairs.smk"
include: "rules/degrade.smk"
include: "rules/denoise.smk"
include: "rules/train.smk"
include: "rules/infer.smk"
include: "rules/ruler.smk"
include: "rules/segment.smk"
include: "rules/metrics.smk"
include: "rules/report.smk"
include: "rules/overview.smk"


rule all:
    default_target: True
    input:
        rules.report.output,
        rules.provenance.output,


# `snakemake overview` (rules/overview.smk): the chosen row on every selected specimen's whole LR overview
rule overview:
    input:
        sr=[overviewed(s, "sr.zarr") for s in OVERVIEW_SPECIMENS],
        segmentation=[overviewed(s, "segmentation.zarr") for s in OVERVIEW_SPECIMENS],
