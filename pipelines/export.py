"""Export a logged anomaly run's streaming detector as a TensorFlow SavedModel.

    python -m pipelines.export --run-id RUN_ID --output DIR [--tracking-uri URI]

The SavedModel's ``serving_default`` signature is one streaming step (see
``pipelines.anomaly.streaming.StreamingStep``): feed it each new point with the carried
``prediction``, ``score`` and ``state`` to score a stream in TF Serving, TFLite or any TF
runtime, without Python or MLflow. ``detector.json`` beside it records threshold and smoothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import mlflow

from pipelines.anomaly.streaming import StreamingStep
from pipelines.core import PipelineError
from pipelines.core.tracking import connect, resolve_tracking_uri


def export(run_id: str, output: Path) -> Path:
    """Write the SavedModel and detector.json to ``output`` (replaced only when complete)."""
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
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        staged = Path(tmp) / "export"
        StreamingStep(model, config["threshold"], config["smoothing"]).export(staged)
        (staged / "detector.json").write_text(json.dumps(config, indent=2) + "\n")
        if output.exists():
            shutil.rmtree(output)
        staged.rename(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.export", description=__doc__)
    parser.add_argument("--run-id", required=True, help="MLflow run of pipelines.anomaly")
    parser.add_argument("--output", required=True, help="directory for the SavedModel")
    parser.add_argument("--tracking-uri", default="", help="MLflow tracking URI")
    args = parser.parse_args(argv)
    try:
        connect(resolve_tracking_uri(args.tracking_uri))
        path = export(args.run_id, Path(args.output))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"streaming detector SavedModel written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
