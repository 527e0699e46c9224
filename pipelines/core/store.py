"""Opening a SQLite MLflow store safely: refused at once when unusable, created by one process
at a time.

Several runs started together on a store that does not exist yet (the default
``sqlite:///mlruns/mlflow.db`` on a fresh checkout) would each create and migrate its schema and
collide (``table ... already exists``, a half-migrated store). A file lock beside the database
serialises that first opening; later openings find the tables and pass straight through.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import mlflow

from pipelines.core.errors import TrackingError
from pipelines.core.outputs import writable

SQLITE_HEADER = b"SQLite format 3\x00"


def open_sqlite_store(uri: str) -> None:
    """Check, then open (creating or migrating) the store of a ``sqlite:///`` URI; MLflow
    caches the opened store per URI for the rest of the process."""
    db_path = Path(uri.removeprefix("sqlite:///"))
    check_sqlite_store(uri, db_path)
    with store_lock(db_path):
        mlflow.MlflowClient(uri).search_experiments(max_results=1)


def check_sqlite_store(uri: str, db_path: Path) -> None:
    """Refuse at once what SQLAlchemy would retry for ~100 s before failing: a store in a
    folder we cannot write, a read-only database file, a file that is not a database."""
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"cannot create MLflow store at {uri}: {exc.strerror}") from None
    if db_path.is_dir():
        raise TrackingError(f"MLflow store {uri}: {db_path} is a folder, not a database file")
    if not writable(db_path.parent):  # SQLite writes its journal beside the database
        raise TrackingError(f"MLflow store {uri}: folder {db_path.parent} is not writable")
    if not db_path.exists():
        return
    if not os.access(db_path, os.R_OK | os.W_OK):
        raise TrackingError(f"MLflow store {uri}: {db_path} is not readable and writable")
    with db_path.open("rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise TrackingError(f"MLflow store {uri}: {db_path} is not an SQLite database")


@contextlib.contextmanager
def store_lock(db_path: Path) -> Iterator[None]:
    """An exclusive lock on ``<db>.lock`` beside the database (released when the process
    dies, so a killed run never blocks the next one)."""
    with open(db_path.with_name(db_path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
