"""Logging for the metric rules without importing torch."""

import logging
import sys


def stderr_logger(name: str) -> logging.Logger:
    """A timestamped INFO logger on the current sys.stderr (the rule log under Snakemake).

    Same format as srseg.runtime.get_logger, which is not used here because
    srseg.runtime imports torch and the metric rules run in envs/data.yaml.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    return logger
