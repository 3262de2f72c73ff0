"""What every Snakemake `script:` does around its one library call.

    with rule_log(snakemake) as log:
        run_align(..., log=log)

stderr (tqdm progress, warnings, tracebacks) goes to the rule's log file; a bad-input
InputError becomes one line, "InputError: <sentence>", written to the log and to the
console (the job's own stderr, which Snakemake shows), without a traceback, and the job
exits 1 so Snakemake removes its outputs. Any other exception keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys

from .io import InputError


@contextlib.contextmanager
def rule_log(smk):
    """Route stderr to the rule's log; turn an InputError into one line on the log and the console."""
    log = str(smk.log[0]) if len(smk.log) else None
    console = sys.stderr
    if log:
        sys.stderr = open(log, "a", buffering=1)  # noqa: SIM115 - stays open for the whole job
    try:
        yield log
    except InputError as exc:
        line = f"InputError: {exc}\n"
        sys.stderr.write(line)
        sys.stderr.flush()
        if sys.stderr is not console:
            console.write(line)
            console.flush()
        raise SystemExit(1) from None
