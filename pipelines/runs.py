"""Find runs left RUNNING by a process that is gone: ``python -m pipelines.runs [--cleanup]``.

A run killed with SIGKILL (the OOM killer, ``kill -9``, a lost machine) cannot close itself, so
MLflow shows it RUNNING forever. Every run records the process that runs it (tags ``pid`` and
``host``); this lists the RUNNING runs whose process no longer exists on this host, with the
command that resumes those that kept checkpoints, and with ``--cleanup`` marks them KILLED.
Runs of other hosts are listed as unknown: only their own host can tell.
"""

from __future__ import annotations

import sys

import mlflow

from pipelines.core.boundary import guarded
from pipelines.core.cli import OneLineParser
from pipelines.core.outputs import process_alive
from pipelines.core.resume import mark_killed
from pipelines.core.tracking import connect, resolve_tracking_uri


def stale_runs() -> list[tuple[mlflow.entities.Run, bool | None]]:
    """RUNNING runs of every experiment with whether their process is alive (None: unknown)."""
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = []
    for run in (
        client.search_runs(experiments, "attributes.status = 'RUNNING'") if experiments else []
    ):
        pid, host = run.data.tags.get("pid", ""), run.data.tags.get("host")
        if not pid.isdigit():
            continue  # not started by these pipelines
        found.append((run, process_alive(int(pid), host)))
    return found


def describe(run: mlflow.entities.Run) -> str:
    output = run.data.tags.get("output")
    hint = f"; to resume it, rerun its command with --resume (--output {output})" if output else ""
    return f"run {run.info.run_id} ({run.info.run_name}){hint}"


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    parser = OneLineParser(prog="python -m pipelines.runs", description=__doc__)
    parser.add_argument(
        "--cleanup", action="store_true", help="mark runs whose process is gone KILLED"
    )
    parser.add_argument("--tracking-uri", default="", help="MLflow tracking URI")
    args = parser.parse_args(argv)
    connect(resolve_tracking_uri(args.tracking_uri))
    for run, alive in stale_runs():
        if alive is None:
            print(f"unknown: {describe(run)} runs on host {run.data.tags.get('host')}")
        elif not alive:
            if args.cleanup:
                pid, host = run.data.tags["pid"], run.data.tags.get("host")
                mark_killed(
                    run.info.run_id, f"its process ({pid} on {host}) ended without closing it"
                )
            print(f"{'marked KILLED' if args.cleanup else 'process gone'}: {describe(run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
