"""Library output to a log file: the main job's screen is for a person.

Inside :func:`library_output_to`, Flower's log lines, Python warnings (deprecations,
``ResourceWarning``, ``subprocess ... is still running``) and Ray's own logging go to one file;
coopflower's progress lines (one per phase per round) and results stay on the terminal. The
file's path is printed once, so nothing is hidden, only moved.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["library_output_to", "RAY_QUIET"]

# run_simulation's backend_config["init_args"]: workers' output and Ray's own log stay in Ray's
# session folder instead of being forwarded to the driver's terminal
RAY_QUIET = {"log_to_driver": False, "logging_level": logging.ERROR}

_LOGGERS = ("flwr", "ray", "py.warnings", "filelock", "urllib3", "web3", "matplotlib")


@contextmanager
def library_output_to(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Send Flower's, Ray's and Python's warnings and log lines to ``path`` while inside."""
    log_path = Path(path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate))
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)
    print(f"(library warnings and Flower's log: {log_path})", file=sys.stderr, flush=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each warning once, into the log
            yield log_path
    finally:
        logging.captureWarnings(False)
        for logger, handlers, propagate in saved:
            logger.removeHandler(handler)
            for h in handlers:
                logger.addHandler(h)
            logger.propagate = propagate
        handler.close()
        # what Ray's and Flower's shutdown leaves to the interpreter's exit is not the user's
        warnings.filterwarnings("ignore", category=ResourceWarning)
