"""Logging for rule scripts, torch-free so that light stages start fast."""

from __future__ import annotations

import logging
import os
import sys


def get_logger(name: str, log_file: str | os.PathLike | None = None) -> logging.Logger:
    """A timestamped INFO logger writing to the rule's log file, or to stderr.

    Under Snakemake the scripts point sys.stderr at the rule log, so the stderr
    default lands there too.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    handler = logging.FileHandler(log_file, mode="a") if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    return logger
