# srseg: which super-resolution model, trained how, turns low-resolution EM into
# images that segment neurons as well as real high-resolution EM?
#
#   snakemake --cores 2                        # the embedded demo (config.yaml)
#   snakemake --profile profiles/slurm         # on a SLURM GPU cluster
#
# The DAG and the results/ layout are described in README.md.

from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default run (the embedded demo). `--configfile other.yaml` replaces it
# rather than being merged into it, so an example config (config/zoo.yaml,
# config/isbi.yaml) is complete on its own; pass `--configfile config.yaml extra.yaml`
# to layer overrides on the demo.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/ingest.smk"
include: "rules/simulate.smk"
include: "rules/align.smk"
include: "rules/denoise.smk"
include: "rules/sr.smk"
include: "rules/segment.smk"
include: "rules/metrics.smk"
include: "rules/report.smk"
include: "rules/provenance.smk"


rule all:
    input:
        rules.report.output,
        rules.provenance.output,
    default_target: True
