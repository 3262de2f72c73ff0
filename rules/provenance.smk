# Provenance: results/report/provenance.json records the resolved config, package
# versions (python, torch + CUDA, snakemake, waterz, ...), the workflow's git commit
# and the host names, so every table can be traced to the run that made it. It runs
# after the report (its input), and again whenever the config changes (params).
# Library changes are tracked through srseg.__version__ (params.version): bump it
# when a library change should invalidate results; rules are not rerun for it
# (see README, "Rerunning after changes").

import srseg as _srseg


rule provenance:
    """Resolved config, software versions, git commit and host names of this run."""
    input:
        rules.report.output,
    output:
        json=report(
            "results/report/provenance.json",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    params:
        config=config,
        version=_srseg.__version__,
        workflow_dir=workflow.basedir,
    log:
        "logs/provenance/provenance.log",
    localrule: True
    resources:
        mem_mb=lambda w, attempt: 1000 * attempt,
        runtime=lambda w, attempt: 5 * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/provenance.py"
