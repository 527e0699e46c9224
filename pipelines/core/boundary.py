"""The error boundary of every entry point (``python -m pipelines.<task>``, ``compare``,
``export``, ``runs``): an expected failure is one line on stderr and exit code 2.

Expected failures are our own :class:`PipelineError` and the classes a user's environment
raises: the file system (OSError: a read-only folder, a full disk), the tracking store (MLflow,
SQLite), the network, undecodable input and exhausted memory. Each becomes one line that names
the file, flag or store; anything else is a bug and keeps its traceback. Ctrl-C and SIGTERM
(``kill``, ``timeout``, ``docker stop``, Slurm, systemd) interrupt the run, which ends KILLED
with its checkpoints kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

from pipelines.core.errors import PipelineError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
MAX_LINE = 400


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the run unwinds like after Ctrl-C."""


def stop_reason(exc: KeyboardInterrupt) -> str:
    """The ``error`` tag of a run ended KILLED."""
    return "terminated by SIGTERM" if isinstance(exc, Terminated) else "interrupted by Ctrl-C"


def guarded(action: Callable[[], int]) -> int:
    """Run ``action`` (an entry point's body) and return its exit code; expected failures
    become ``error: <one line>`` and exit 2, interruptions exit 130 (Ctrl-C) or 143 (SIGTERM)."""
    with sigterm_interrupts():
        try:
            return action()
        except Terminated:
            print("terminated (SIGTERM)", file=sys.stderr)
            exit_now(EXIT_TERMINATED)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:
            message = describe(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return EXIT_BAD_INPUT


def exit_now(code: int) -> NoReturn:
    """End the process once the run is closed (KILLED, checkpoints kept, output flushed),
    without interpreter finalisation: after a SIGTERM raised inside TensorFlow's training loop,
    the garbage collection at shutdown was seen to hang for good (the sender waits in vain).
    SIGTERM asks the process to end, so this is its default action, done after our cleanup."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` once; a second SIGTERM kills at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while a checkpoint is written (an exception raised inside
    h5py or between two files would leave it half-written); they act right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])


def describe(exc: BaseException) -> str | None:
    """One line for an expected failure, None for a bug (which keeps its traceback)."""
    if isinstance(exc, PipelineError):
        return one_line(str(exc))
    for kinds, explain in _classes():
        if isinstance(exc, kinds):
            return one_line(explain(exc))
    return None


def one_line(text: str) -> str:
    """The first meaningful line of ``text``; an HTML page is named, not printed."""
    html = re.search(r"<(!doctype|html|head|body)\b", text, re.IGNORECASE)
    if html:
        head = text[: html.start()].strip().rstrip("'\"").strip().removesuffix("Response body:")
        before = one_line(head) if head.strip() else ""
        return (
            f"{before}{' ' if before else ''}(the server "
            "answered with an HTML page instead of MLflow's API: is the tracking URI an MLflow "
            "server?)"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "unknown error"
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    second = f" -> {exc.filename2}" if exc.filename2 else ""
    return f"{exc.filename}{second}: {reason}"


def _mlflow_error(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"MLflow store {_tracking_uri()}: {one_line(message)}"


def _store_error(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"MLflow store {_tracking_uri()}: {one_line(str(orig))}"


def _tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def _network_error(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"network: {one_line(str(reason))}"


def _decoding_error(exc: UnicodeDecodeError) -> str:
    return (
        f"input is not {exc.encoding} text (byte {exc.object[exc.start : exc.start + 1]!r} at "
        f"offset {exc.start})"
    )


def _memory_error(exc: Exception) -> str:
    detail = one_line(getattr(exc, "message", None) or str(exc) or "allocation failed")
    return (
        "out of memory: lower --units, --layers or --batch-size "
        f"({detail.split(' when ')[0].split(' [')[0]})"
    )


def _classes() -> list[tuple[type | tuple[type, ...], Callable[[BaseException], str]]]:
    """(exception classes, one-line description), most specific first: a network error is
    also an OSError, a store error may arrive wrapped in an MlflowException."""
    import sqlite3
    import urllib.error

    import mlflow
    import requests
    import sqlalchemy.exc
    import tensorflow as tf

    network = (requests.exceptions.RequestException, urllib.error.URLError, ConnectionError)
    return [
        ((MemoryError, tf.errors.ResourceExhaustedError), _memory_error),
        (network, _network_error),
        ((sqlite3.Error, sqlalchemy.exc.SQLAlchemyError), _store_error),
        (mlflow.exceptions.MlflowException, _mlflow_error),
        (UnicodeDecodeError, _decoding_error),
        (OSError, _os_error),
    ]
