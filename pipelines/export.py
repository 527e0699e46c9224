"""Export a logged anomaly run's streaming detector as a TensorFlow SavedModel.

    python -m pipelines.export --run-id RUN_ID --output DIR [--tracking-uri URI]

The SavedModel's ``serving_default`` signature is one streaming step (see
``pipelines.anomaly.streaming.StreamingStep``): feed it each new point with the carried
``prediction``, ``score`` and ``state`` to score a stream in TF Serving, TFLite or any TF
runtime, without Python or MLflow. ``detector.json`` beside it records threshold and smoothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow

from pipelines.anomaly.streaming import StreamingStep
from pipelines.core import PipelineError
from pipelines.core.boundary import guarded
from pipelines.core.cli import OneLineParser
from pipelines.core.outputs import OutputFolder, replace_folder
from pipelines.core.tracking import connect, resolve_tracking_uri


def export(run_id: str, output: Path) -> Path:
    """Write the SavedModel and detector.json to ``output``, replaced only when complete.

    ``output`` must be new, empty or an earlier export (its ``run.json`` lists what we wrote):
    a folder holding anything else is refused, never deleted.
    """
    folder = OutputFolder(output)
    try:
        config = mlflow.artifacts.load_dict(f"runs:/{run_id}/results/detector.json")
        model = mlflow.keras.load_model(f"runs:/{run_id}/model")
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(f"cannot load run {run_id}: {exc.message.splitlines()[0]}") from None
    if config["model"] != "forecaster":
        raise PipelineError(
            f"run {run_id} used the {config['model']} model; streaming export "
            "needs --model forecaster"
        )

    def write(staged: Path) -> None:
        # An online run's step returns the raw error (smoothing 1): its likelihood and alarm
        # rule (detector.json) are applied to that error stream outside the graph.
        StreamingStep(model, config["threshold"], config.get("smoothing", 1)).export(staged)
        (staged / "detector.json").write_text(json.dumps(config, indent=2) + "\n")

    return replace_folder(folder, write, run_id=run_id)


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    parser = OneLineParser(prog="python -m pipelines.export", description=__doc__)
    parser.add_argument("--run-id", required=True, help="MLflow run of pipelines.anomaly")
    parser.add_argument("--output", required=True, help="directory for the SavedModel")
    parser.add_argument("--tracking-uri", default="", help="MLflow tracking URI")
    args = parser.parse_args(argv)
    output = Path(args.output)
    OutputFolder(output)  # refused before the store is touched
    connect(resolve_tracking_uri(args.tracking_uri))
    path = export(args.run_id, output)
    print(f"streaming detector SavedModel written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
