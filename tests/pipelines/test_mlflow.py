"""What a user finds in MLflow, read through the MLflow client on real tiny runs in one store:
a plain run registered in the model registry and applied through ``models:/``, a 2-trial search
and a 2-cell comparison of the anomaly detector (issue 21, points 1-7; point 3, SIGTERM ending a
run KILLED, is test_safety.py's test_sigterm_ends_the_run_killed_with_its_checkpoints_kept,
and point 7's timestamped figures test_anomaly.py's; the stages' curves are checked in
test_stages.py, the import cycles in test_imports.py).

Seed 4 makes the random oracle pick windows 16 and 32 for the two trials (so the data is rebuilt
per trial) and no cell/dropout combination that diverges on this tiny series.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines import compare
from pipelines.anomaly.task import AnomalyConfig, AnomalyTask
from pipelines.core import RunOptions, main, naming, run
from tests.conftest import logged_models, runs_of
from tests.pipelines.test_anomaly import TINY, ecg_like_csv
from tests.pipelines.test_inference import ToyTask
from tests.pipelines.test_tuning import tiny_config


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Every run of this module, in one SQLite store."""
    workdir = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    series = ecg_like_csv(workdir / "series.csv")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        toy_flags = ["--epochs", "2", "--register-model", "toy-model", "--offset", "0.25"]
        code = main(ToyTask(), [*toy_flags, "--data", str(series), "--tracking-uri", uri])
    assert code == 0
    cfg = tiny_config(series)
    opts = RunOptions(tune=True, max_trials=2, tracking_uri=uri, output=str(workdir / "search"))
    searched = run(AnomalyTask(), cfg, opts)
    flags = "--time-column timestamp --label-column label --epochs 1 --no-log-model"
    compared = io.StringIO()
    with contextlib.redirect_stdout(compared):
        code = compare.main(
            ["--task", "anomaly", "--cells", "lstm,gru", *TINY, *flags.split()]
            + ["--data", str(series), "--tracking-uri", uri, "--output", str(workdir / "cmp")]
        )
    assert code == 0
    return {
        "uri": uri,
        "series": series,
        "printed": printed.getvalue(),
        "searched": searched,
        "search_output": workdir / "search",
        "compare_output": workdir / "cmp",
        "compared": compared.getvalue(),
    }


def client(store) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(store["uri"])
    return mlflow.MlflowClient(store["uri"])


def toy_run(store) -> mlflow.entities.Run:
    (found,) = runs_of(store["uri"], "toy")
    return found


def anomaly_runs(store) -> dict[str, list[mlflow.entities.Run]]:
    """The anomaly experiment's runs: the search parent, its trials, the compare parent and
    the compared runs (one experiment for all of them)."""
    runs = runs_of(store["uri"], "anomaly")
    kinds = {"search": [], "trial": [], "compare": [], "compared": []}
    by_id = {r.info.run_id: r for r in runs}
    for r in runs:
        parent = by_id.get(r.data.tags.get("mlflow.parentRunId", ""))
        if parent is None:
            kinds["search" if "search" in r.data.tags else "compare"].append(r)
        else:
            kinds["trial" if "search" in parent.data.tags else "compared"].append(r)
    return kinds


def root_files(store, run_id: str) -> set[str]:
    return {f.path for f in client(store).list_artifacts(run_id) if not f.is_dir}


# -- point 2: logged models ---------------------------------------------------------------------
def test_the_keras_model_is_a_logged_model_with_the_runs_final_metrics(store):
    run_ = toy_run(store)
    (output,) = run_.outputs.model_outputs
    model = client(store).get_logged_model(output.model_id)
    assert model.name == "model" and model.source_run_id == run_.info.run_id
    linked = {m.key: m.value for m in model.metrics}
    final = {k: v for k, v in run_.data.metrics.items() if k.startswith(("test_", "train_"))}
    assert linked == pytest.approx(final) and "test_mse" in linked  # no epoch curve among them
    info = mlflow.models.get_model_info(f"models:/{model.model_id}")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert model.params["offset"] == "0.25"  # the run's params travel with the model
    x = np.array([[1.0, 2.0]], "float32")
    by_run = mlflow.keras.load_model(f"runs:/{run_.info.run_id}/model").predict(x, verbose=0)
    by_id = mlflow.keras.load_model(f"models:/{model.model_id}").predict(x, verbose=0)
    np.testing.assert_allclose(by_run, by_id)


def test_anomaly_scorer_is_a_logged_model_that_claims_no_metric(store):
    (parent,) = anomaly_runs(store)["search"]
    models = logged_models(store["uri"], parent)
    assert set(models) == {"model", "scorer"}
    keras_metrics = {
        m.key for m in client(store).get_logged_model(models["model"].model_id).metrics
    }
    assert {"test_roc_auc", "test_event_f1", "best_val_loss"} <= keras_metrics
    assert not client(store).get_logged_model(models["scorer"].model_id).metrics


def test_a_registered_model_applies_through_models_uris(store, capsys, tmp_path):
    assert "registered as models:/toy-model/1" in store["printed"]
    client(store).set_registered_model_alias("toy-model", "champion", "1")
    inputs = tmp_path / "new.csv"
    pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]}).to_csv(inputs, index=False)
    answers = []
    for uri in ("models:/toy-model/1", "models:/toy-model@champion"):
        argv = ["--model-uri", uri, "--predict", str(inputs), "--tracking-uri", store["uri"]]
        assert main(ToyTask(), argv) == 0
        answers.append([float(v) for v in capsys.readouterr().out.split()])
    model = mlflow.keras.load_model(f"runs:/{toy_run(store).info.run_id}/model")
    expected = model.predict(pd.read_csv(inputs).to_numpy("float32"), verbose=0).ravel() + 0.25
    for answer in answers:
        np.testing.assert_allclose(answer, expected, atol=1e-5)


# -- point 1: a search's parent describes the winner ------------------------------------------
def same(logged: str, value) -> bool:
    """An MLflow param (a string) equals a value read back from a CSV."""
    if isinstance(value, str):
        return logged == value
    return float(logged) == pytest.approx(float(value))


def test_search_logs_a_child_per_trial_and_the_trials_table(store):
    kinds = anomaly_runs(store)
    (parent,), trials = kinds["search"], kinds["trial"]
    assert parent.info.status == "FINISHED" and parent.info.run_id == store["searched"].run_id
    assert {t.data.tags["search_run_id"] for t in trials} == {parent.info.run_id}
    out = store["search_output"]
    table = pd.read_csv(out / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert sorted(table.index) == sorted(t.data.tags["trial_id"] for t in trials)
    assert set(table["window"]) == {16, 32}  # a data-level hyperparameter, rebuilt per trial
    for trial in trials:
        row = table.loc[trial.data.tags["trial_id"]]
        assert trial.info.status == "FINISHED" and row["status"] == "COMPLETED"
        for name in ("window", "cell", "units", "layers", "dropout", "learning_rate"):
            assert same(trial.data.params[name], row[name]), name
        assert trial.data.metrics["best_val_loss"] == pytest.approx(row["score"])
        assert trial.data.metrics["best_epochs"] == 1
        history = client(store).get_metric_history(trial.info.run_id, "val_loss")
        assert [m.step for m in history] == [1] and int(trial.data.params["parameter_count"]) > 0
    best = table.reset_index().loc[table["score"].reset_index(drop=True).idxmin()]
    params = parent.data.params
    assert params["best_trial_id"] == best["trial_id"]
    for name in ("window", "cell", "units", "learning_rate"):
        assert same(params[f"best_{name}"], best[name]), name
    assert params["tuner"] == "random" and params["max_trials"] == "2"
    assert parent.data.metrics["best_val_loss"] == pytest.approx(best["score"])
    assert {"test_roc_auc", "test_event_f1", "test_alarms"} <= set(parent.data.metrics)
    names = {f.path for f in client(store).list_artifacts(parent.info.run_id, "results")}
    assert {"results/trials.csv", "results/search_start.json"} <= names
    assert (out / "metrics.json").exists() and (out / "tuner" / "anomaly" / "oracle.json").exists()


def test_search_parent_params_tags_name_and_config_are_the_refit_winners(store):
    (parent,) = anomaly_runs(store)["search"]
    params, tags = parent.data.params, parent.data.tags
    for name in ("cell", "units", "window", "layers", "dropout", "learning_rate"):
        assert params[name] == params[f"best_{name}"], name  # best_* kept beside them
    assert params["units"] != "8"  # not the starting point (the space starts at 16 units)
    assert tags["cell"] == params["cell"] and tags["search"] == "random"
    config = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/config.json")
    assert str(config["units"]) == params["units"] and str(config["window"]) == params["window"]
    assert config["epochs"] == int(params["best_epochs"])
    start = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/results/search_start.json")
    assert (start["units"], start["window"], start["cell"]) == (8, 32, "lstm")
    name = parent.info.run_name
    assert name.startswith(f"series-{params['cell']}-") and name.endswith("-search")
    assert f"units={params['units']}" in name
    assert parent.data.metrics["best_val_loss"] > 0
    winner = store["searched"].model
    assert winner.count_params() == int(params["parameter_count"])


def test_trials_are_named_by_what_they_change_and_logged_like_plain_runs(store):
    trials = anomaly_runs(store)["trial"]
    assert len(trials) == 2
    for trial in trials:
        params, name = trial.data.params, trial.info.run_name
        assert name.startswith(f"series-{params['cell']}-")
        assert name.endswith(f"-trial{trial.data.tags['trial_id']}")
        assert f"window={params['window']}" in name or params["window"] == "32"
        assert params["precision"] == "float32" and params["data"] == "series"
        config = mlflow.artifacts.load_dict(f"runs:/{trial.info.run_id}/config.json")
        assert str(config["units"]) == params["units"]
    assert len({t.info.run_name for t in trials}) == 2


# -- point 4: comparisons ----------------------------------------------------------------------
def test_compare_parent_holds_sortable_cell_metrics_and_its_config(store):
    kinds = anomaly_runs(store)
    (parent,) = kinds["compare"]
    assert parent.data.tags["compare"] == "lstm,gru" and "cell" not in parent.data.params
    assert parent.data.params["cells"] == "lstm,gru" and parent.data.params["seeds"] == "1"
    by_cell = {c.data.params["cell"]: c for c in kinds["compared"]}
    metrics = parent.data.metrics
    for cell, child in by_cell.items():
        assert metrics[f"test_roc_auc/{cell}"] == pytest.approx(child.data.metrics["test_roc_auc"])
        best_val = min(
            m.value for m in client(store).get_metric_history(child.info.run_id, "val_loss")
        )
        assert metrics[f"best_val_loss/{cell}"] == pytest.approx(best_val)
    best = parent.data.tags["best_cell"]
    assert best == min(by_cell, key=lambda c: metrics[f"best_val_loss/{c}"])
    assert metrics["test_roc_auc"] == metrics[f"test_roc_auc/{best}"]
    config = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/config.json")
    assert config["cells"] == "lstm,gru" and "cell" not in config and config["units"] == 8
    assert parent.info.run_name.startswith("series-lstm+gru-")
    assert parent.info.run_id in store["compared"] and "±" in store["compared"]
    local = mlflow.artifacts.download_artifacts(f"runs:/{parent.info.run_id}/results")
    table = pd.read_csv(f"{local}/comparison.csv")
    assert list(table["cell"]) == ["lstm", "gru"] and list(table["runs"]) == [1, 1]
    for column in (
        "parameter_count",
        "train_seconds_mean",
        "test_roc_auc_std",
        "test_event_f1_mean",
    ):
        assert column in table
    for _, row in table.iterrows():
        child = by_cell[row["cell"]]
        assert row["test_roc_auc_mean"] == pytest.approx(child.data.metrics["test_roc_auc"])
        assert str(row["parameter_count"]) == child.data.params["parameter_count"]
        assert child.data.params["seed"] == "42"
    assert (store["compare_output"] / "comparison.csv").exists()
    assert sorted(c.info.run_name for c in by_cell.values()) == ["series-gru", "series-lstm"]


# -- point 5: figures side by side -------------------------------------------------------------
def test_figures_sit_at_the_artifact_root(store):
    kinds = anomaly_runs(store)
    (search,), (comparison,) = kinds["search"], kinds["compare"]
    assert {"series.png", "tuning_objective.png", "config.json"} <= root_files(
        store, search.info.run_id
    )
    assert "validation_curves.png" in root_files(store, comparison.info.run_id)
    for compared in kinds["compared"]:  # the compare page shows what these runs share
        assert "series.png" in root_files(store, compared.info.run_id)
    artifacts = client(store).list_artifacts(search.info.run_id)
    assert "figures" not in {f.path for f in artifacts if f.is_dir}


# -- points 6 and 7: names, short params, the link, epochs from 1 -----------------------------
def test_plain_run_name_params_tags_and_printed_link(store):
    run_ = toy_run(store)
    assert run_.info.run_name == "series-lstm-epochs=2-offset=0.25"  # what differs, no "toy-"
    assert run_.data.params["data"] == "series" and run_.data.tags["data"] == "series"
    assert run_.data.tags["data_path"] == str(store["series"].absolute())
    config = mlflow.artifacts.load_dict(f"runs:/{run_.info.run_id}/config.json")
    assert config["data"] == str(store["series"])  # the config as given
    experiment = run_.info.experiment_id
    db = store["uri"].removeprefix("sqlite:///")
    line = next(li for li in store["printed"].splitlines() if li.startswith("MLflow run"))
    assert line == (
        f"MLflow run {run_.info.run_id}; to view it: run `mlflow ui --backend-store-uri "
        f"sqlite:///{db}`, then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?workflowType=machine_learning"
    )
    steps = [m.step for m in client(store).get_metric_history(run_.info.run_id, "loss")]
    assert steps == [1, 2]


def test_labels_path_is_shortened_like_data_with_the_full_path_as_a_tag(workdir):
    """Anomaly's ``--labels`` (a NAB windows file) is a path param like ``data``: its stem as
    the param, the full absolute path as the ``labels_path`` tag, the config as given in
    ``config.json``; an unset ``--labels`` stays an empty param without a tag."""
    long = "/srv/benchmarks/numenta-anomaly-benchmark/v1.1"
    cfg = AnomalyConfig(
        data=f"{long}/data/realKnownCause/machine_temperature.csv",
        labels=f"{long}/labels/combined_windows.json",
    )
    params = naming.short_params(cfg.to_params())
    assert params["data"] == "machine_temperature" and params["labels"] == "combined_windows"
    tags = naming.run_tags("anomaly", cfg)
    assert tags["data_path"] == cfg.data and tags["labels_path"] == cfg.labels
    unset = AnomalyConfig(data=cfg.data)
    assert naming.short_params(unset.to_params())["labels"] == ""
    assert "labels_path" not in naming.run_tags("anomaly", unset)

    # A real run, the labels given relative to the working folder.
    folder = workdir / "numenta-anomaly-benchmark"
    (folder / "labels").mkdir(parents=True)
    data = ecg_like_csv(folder / "machine_temperature.csv")
    frame = pd.read_csv(data).drop(columns="label")
    frame.to_csv(data, index=False)
    stamps = pd.to_datetime(frame["timestamp"])
    windows = {"realKnownCause/machine_temperature.csv": [[str(stamps[990]), str(stamps[1050])]]}
    (folder / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    labels = "numenta-anomaly-benchmark/labels/combined_windows.json"
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    flags = ["--time-column", "timestamp", "--no-log-model", "--tracking-uri", uri]
    assert main(AnomalyTask(), [*TINY, "--data", str(data), "--labels", labels, *flags]) == 0
    (logged,) = runs_of(uri, "anomaly")
    params, tags = logged.data.params, logged.data.tags
    assert np.isfinite(logged.data.metrics["test_nab_standard"])  # the labels were used
    assert params["labels"] == "combined_windows" and params["data"] == "machine_temperature"
    assert tags["labels_path"] == str(Path.cwd() / labels) and tags["data_path"] == str(data)
    assert not [k for k, v in params.items() if "numenta" in v]  # no param holds a path
    config = mlflow.artifacts.load_dict(f"runs:/{logged.info.run_id}/config.json")
    assert config["labels"] == labels and config["data"] == str(data)


def test_server_link_opens_the_runs_table():
    from pipelines.core.tracking import where_to_view

    assert where_to_view("http://mlflow:5000/", "7") == (
        "open http://mlflow:5000/#/experiments/7/runs?workflowType=machine_learning"
    )


def test_register_model_is_refused_where_there_is_no_single_model(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    flags = ["--register-model", "x", "--tracking-uri", uri]
    assert main(ToyTask(), [*flags, "--no-log-model"]) == 2
    assert "--register-model needs the model logged" in capsys.readouterr().err
    assert compare.main(["--task", "anomaly", "--cells", "lstm,gru", *flags]) == 2
    assert "--register-model needs one model" in capsys.readouterr().err


def test_mlflows_caution_about_pickled_scorers_is_not_repeated_per_file(caplog):
    """A corpus run logs a scorer per file: the caution came 32 times in a 32-file run."""
    logger = logging.getLogger("mlflow.pyfunc")
    with caplog.at_level(logging.WARNING, logger="mlflow.pyfunc"):
        logger.warning("Passing a Python object as `python_model` causes it to be serialized")
        logger.warning("another warning")
    assert [record.getMessage() for record in caplog.records] == ["another warning"]
