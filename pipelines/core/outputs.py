"""``--output`` folders: we write into a folder only if it is new, empty or ours, and we only
replace or delete files we wrote.

A folder is ours when its ``run.json`` says so (``"written_by": "pipelines"``) and lists every
other entry we put there (``files``; ``trees`` are folders whose whole content is ours: the
checkpoints under ``.pipelines/``, KerasTuner's ``tuner/``). Anything else in it is a user's:
a typo such as ``--output .`` or ``--output ~`` is refused in one line instead of overwriting or
deleting what was there. The runner, ``pipelines.compare`` and ``pipelines.export`` all write
through :class:`OutputFolder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.core.errors import ConfigError

STATE_FILE = "run.json"
STAGED_STATE = ".run.json.tmp"  # run.json being replaced
PRIVATE = ".pipelines"  # checkpoints, the epoch journal and staging: a name of our own
WRITER = "pipelines"
SHOWN = 3  # foreign entries named in the error line


class OutputFolder:
    """An ``--output`` folder checked to be safe to write (see the module docstring).

    Nothing is created until something is written, so a run that fails before training leaves
    no file behind.
    """

    def __init__(self, path: str | Path, flag: str = "--output"):
        self.path = Path(path).expanduser()
        self.flag = flag
        self.state = self._read_state()
        foreign = list(self._foreign_entries())
        if foreign:
            more = ", ..." if len(foreign) > SHOWN else ""
            raise ConfigError(
                f"{self.flag} {self.path} holds files we did not write "
                f"({', '.join(foreign[:SHOWN])}{more}): choose a new or empty folder"
            )
        self._require_writable()

    @property
    def checkpoints(self) -> Path:
        return self.path / PRIVATE / "checkpoints"

    @property
    def run_id(self) -> str | None:
        return self.state.get("run_id")

    def _read_state(self) -> dict[str, Any]:
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.flag} {self.path} is a file, not a folder")
        file = self.path / STATE_FILE
        if not file.exists():
            return {}
        try:
            state = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not JSON"
            raise ConfigError(
                f"{self.flag} {self.path}: {STATE_FILE} is unreadable ({reason}), so we cannot "
                "tell which files are ours: choose a new or empty folder"
            ) from None
        if not (isinstance(state, dict) and state.get("written_by") == WRITER):
            raise ConfigError(
                f"{self.flag} {self.path}: {STATE_FILE} was not written by these pipelines: "
                "choose a new or empty folder"
            )
        return state

    def _foreign_entries(self) -> Iterator[str]:
        """Entries we did not write, lazily (``--output ~`` must not walk a home folder)."""
        if not self.path.is_dir():
            return
        files = {STATE_FILE, STAGED_STATE, *self.state.get("files", [])}
        trees = {PRIVATE, *self.state.get("trees", [])}
        owned = files | trees
        for root, dirs, names in os.walk(self.path):
            relative = Path(root).relative_to(self.path)
            for name in sorted(names):
                path = (relative / name).as_posix()
                if path not in files:
                    yield path
            for name in sorted(dirs):
                path = (relative / name).as_posix()
                if path in trees:
                    dirs.remove(name)
                elif not any(o.startswith(path + "/") for o in owned):
                    dirs.remove(name)
                    yield path + "/"

    def _require_writable(self) -> None:
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        if not (existing.is_dir() and writable(existing)):
            raise ConfigError(f"{self.flag} {self.path}: {existing} is not a writable folder")

    def write_state(self, **changes: Any) -> None:
        """Update ``run.json`` atomically (a kill mid-write leaves the previous one)."""
        self.state = {"written_by": WRITER} | self.state | changes
        self.path.mkdir(parents=True, exist_ok=True)
        staged = self.path / STAGED_STATE
        staged.write_text(json.dumps(self.state, indent=2) + "\n")
        staged.replace(self.path / STATE_FILE)

    def start_run(self, run_id: str | None, config: dict[str, Any]) -> None:
        """Make the folder the home of a new run: our earlier results and checkpoints go, so
        files of two runs never mix; ``run.json`` names the run, its config and process."""
        for name in self.state.get("files", []):
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for name in os.listdir(self.path / PRIVATE) if (self.path / PRIVATE).is_dir() else []:
            if not name.startswith("staging-"):
                shutil.rmtree(self.path / PRIVATE / name, ignore_errors=True)
        self.state = {"trees": self.state.get("trees", [])}
        self.write_state(run_id=run_id, config=config, files=[], **process())

    def claim_process(self) -> None:
        """Record that this process now runs the folder's run (on resume)."""
        self.write_state(**process())

    def publish(self, write: Any, run_id: str | None) -> None:
        """Call ``write(folder)`` on an empty staging folder, then move what it wrote in place
        as results of run ``run_id``, listed in ``run.json`` first. All or nothing: a failure
        while writing leaves the folder as it was."""
        created = not self.path.exists()
        staging_root = self.path / PRIVATE
        staging_root.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=staging_root, prefix="staging-") as tmp:
                staged = Path(tmp)
                write(staged)
                names = sorted(p.name for p in staged.iterdir())
                if not self.state or self.run_id != run_id:
                    self.start_run(run_id, {})
                files = sorted(set(self.state.get("files", [])) | set(names))
                self.write_state(files=files)
                for name in names:
                    target = self.path / name
                    if target.is_dir():
                        shutil.rmtree(target)  # listed in run.json: ours
                    (staged / name).replace(target)
        finally:
            with contextlib.suppress(OSError):
                staging_root.rmdir()  # only if empty (no checkpoints)
            if created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # only if empty (nothing written)

    def own_tree(self, name: str) -> Path:
        """A sub-folder whose whole content is ours (KerasTuner's state)."""
        trees = sorted({*self.state.get("trees", []), name})
        self.write_state(trees=trees)
        return self.path / name


def replace_folder(folder: OutputFolder, write: Any, **state: Any) -> Path:
    """Write a whole new folder content (``pipelines.export``): staged beside the folder, then
    swapped in by renames; the old content, checked to be ours, is removed only after."""
    target = folder.path
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.staging-") as tmp:
        staged = Path(tmp) / "new"
        staged.mkdir()
        write(staged)
        files = sorted(
            p.relative_to(staged).as_posix() for p in staged.rglob("*") if not p.is_dir()
        )
        content = {"written_by": WRITER, "files": files} | state
        (staged / STATE_FILE).write_text(json.dumps(content, indent=2) + "\n")
        if target.exists():
            target.rename(Path(tmp) / "old")  # ours (checked); removed with the staging folder
        staged.rename(target)
    return target


def writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, tried (permission bits miss read-only
    mounts, and root passes every permission check)."""
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".pipelines-probe-")
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def process() -> dict[str, Any]:
    """Who runs a run: enough to tell later whether it is still alive."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def process_alive(pid: Any, host: Any) -> bool | None:
    """True/False for a process of this host other than ours; None when we cannot tell
    (another host)."""
    if host != socket.gethostname():
        return None
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
