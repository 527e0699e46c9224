"""End-to-end checks of ``python -m pipelines.sentiment``: MLflow contents, reload, predict mode,
k-fold, the packaged data, GloVe init, the NB-SVM expert of the deployed model and every bad
input."""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.core import DataError, RunOptions, main, run
from pipelines.core.embeddings import GLOVE_VECTORS, GLOVE_WORDS, embedding_matrix
from pipelines.datasets.text_builders import load_labelled_texts
from pipelines.sentiment.pretrain import plot_synopses, pretrain
from pipelines.sentiment.task import (
    VECTORIZER,
    SentimentConfig,
    SentimentTask,
    explain_texts,
    part_probabilities,
)
from tests.conftest import runs_of


def cli(argv: list[str]) -> int:
    """The task's command line, in process."""
    return main(SentimentTask(), argv)


# The defaults' GloVe init (50d) and NB-SVM expert, with a tiny network.
TINY = dict(epochs=2, units=8, attention_units=8, batch_size=16, explain=4)
TINY_FLAGS = ["--epochs", "1", "--units", "8", "--attention-units", "8"]
# Texts with capitals, punctuation, unseen words and unseen bigrams.
PROBES = ["The film was GREAT!", "boring, and weak", "the cast 3 was superb", "zzz qqq film", ""]


@functools.cache
def glove(word: str) -> np.ndarray:
    """The GloVe vector of ``word``, read from the package files directly."""
    words = pd.read_parquet(GLOVE_WORDS.path())["index"].tolist()
    return np.load(GLOVE_VECTORS.path(), mmap_mode="r")[words.index(word)]


def reviews_csv(path: Path, n: int = 120) -> Path:
    """Short reviews whose label follows from one sentiment word."""
    rng = np.random.default_rng(0)
    good, bad = ["great", "wonderful", "moving", "superb"], ["awful", "boring", "dull", "weak"]
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        word = rng.choice(good if positive else bad)
        rows.append(
            {
                "review": f"the film was {word} and the cast {i % 7}",
                "mood": "pos" if positive else "neg",
            }
        )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sentiment")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    data = reviews_csv(workdir / "reviews.csv")
    cfg = SentimentConfig(data=str(data), text_column="review", label_column="mood", **TINY)
    result = run(SentimentTask(), cfg, RunOptions(tracking_uri=uri, output=str(workdir / "out")))
    return result, uri, workdir


def test_run_is_fully_tracked(trained):
    result, uri, workdir = trained
    (logged,) = runs_of(uri, "sentiment")
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["task"] == "sentiment" and logged.data.tags["cell"] == "lstm"
    for key in ("cell", "units", "dropout", "weight_decay", "max_tokens", "folds", "data",
                "embeddings", "expert"):  # fmt: skip
        assert key in logged.data.params
    assert logged.data.params["embeddings"] == "glove" and logged.data.params["expert"] == "nbsvm"
    for key in ("test_accuracy", "test_f1", "test_roc_auc", "baseline_majority_accuracy"):
        assert 0.0 <= logged.data.metrics[key] <= 1.0
    for part in ("recurrent", "expert"):  # each part of the deployed ensemble alone
        for name in ("accuracy", "f1", "roc_auc"):
            assert 0.0 <= logged.data.metrics[f"test_{part}_{name}"] <= 1.0
    client = mlflow.MlflowClient(uri)
    files = {
        f.path for d in ("figures", "results") for f in client.list_artifacts(logged.info.run_id, d)
    }
    assert {
        "figures/word_effects.png",
        "results/explanations.html",
        "results/classes.json",
    } <= files
    page = mlflow.artifacts.load_text(f"runs:/{logged.info.run_id}/results/explanations.html")
    assert page.count("<p>") == 4 and "<span style=" in page
    table = pd.read_csv(workdir / "out" / "explanations.csv")
    assert list(table.columns) == [
        "text", "label", "predicted", "probability", "top_words", "top_attended"
    ]  # fmt: skip


def test_logged_model_takes_raw_strings_and_predicts_the_same(trained):
    result, uri, _ = trained
    mlflow.set_tracking_uri(uri)
    texts = np.array(["the film was great", "boring and weak"], dtype=object)
    reloaded = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    np.testing.assert_allclose(
        reloaded.predict(texts, verbose=0), result.model.predict(texts, verbose=0), atol=1e-6
    )
    # The logged model is the deployed ensemble, its parts and n-gram vocabulary included.
    before, after = (
        part_probabilities(m, np.array(PROBES, object)) for m in (result.model, reloaded)
    )
    assert set(after) == {"", "recurrent_", "expert_"}
    for part in after:
        np.testing.assert_allclose(after[part], before[part], atol=1e-6)


def untrained(tmp_path):
    """Task, config, splits and a freshly built network on the tiny review file."""
    data = reviews_csv(tmp_path / "reviews.csv")
    cfg = SentimentConfig(data=str(data), text_column="review", label_column="mood", **TINY)
    task = SentimentTask()
    splits = task.data(cfg)
    return task, cfg, splits, task.build_model(cfg, splits)


def test_deployed_model_is_the_mean_of_the_network_and_the_sklearn_fitted_expert(tmp_path):
    task, cfg, splits, network = untrained(tmp_path)
    deployed = task.deployable(network, splits, cfg)
    texts = np.array([*splits.info["texts"][splits.info["parts"][2]], *PROBES], dtype=object)
    parts = part_probabilities(deployed, texts)
    expert = splits.info["expert"]
    # The Keras featurisation and unit reproduce the scikit-learn model they were fitted from.
    np.testing.assert_allclose(parts["expert_"], expert.probability(texts), atol=1e-5)
    np.testing.assert_allclose(parts["recurrent_"], network.predict(texts, verbose=0).ravel(),
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(parts[""], (parts["recurrent_"] + parts["expert_"]) / 2, atol=1e-6)
    assert not deployed.get_layer("expert").trainable
    # The sentiment words carry the expert's weight, not the filler.
    weight = dict(zip(expert.vectorizer.get_vocabulary(), expert.weights, strict=True))
    assert (
        min(weight[w] for w in ("great", "superb")) > 0 > max(weight[w] for w in ("awful", "dull"))
    )
    assert abs(weight["film"]) < min(abs(weight[w]) for w in ("great", "superb", "awful", "dull"))


def test_expert_none_deploys_the_network_alone(tmp_path):
    data = reviews_csv(tmp_path / "reviews.csv", n=60)
    alone = dict(expert="none", embeddings="none", embedding_dim=8)
    cfg = SentimentConfig(data=str(data), text_column="review", label_column="mood",
                          **TINY | alone)  # fmt: skip
    result = run(SentimentTask(), cfg, RunOptions(tracking_uri=f"sqlite:///{tmp_path}/m.db",
                                                  log_model=False))  # fmt: skip
    assert "expert" not in [layer.name for layer in result.model.layers]
    assert result.metrics["test_recurrent_accuracy"] == result.metrics["test_accuracy"]
    assert not any(name.startswith("test_expert_") for name in result.metrics)
    assert result.model.get_layer("embedding").get_weights()[0].shape[1] == 8


def test_embedding_starts_from_glove_for_known_words_and_keeps_its_init_for_others(tmp_path):
    _, _, splits, model = untrained(tmp_path)
    weights = model.get_layer("embedding").get_weights()[0]
    vocabulary = splits.info["vectorizer"].get_vocabulary()
    for word in ("film", "great", "boring", "the"):
        np.testing.assert_array_equal(weights[vocabulary.index(word)], glove(word))
    np.testing.assert_allclose(glove("the")[:3], [0.418, 0.24968, -0.41242])  # glove.6B.50d.txt
    initial = np.random.default_rng(0).uniform(-0.05, 0.05, (4, 50)).astype("float32")
    matrix = embedding_matrix(["", "[UNK]", "moving", "zzqxjv"], initial)
    np.testing.assert_array_equal(matrix[[0, 1, 3]], initial[[0, 1, 3]])
    np.testing.assert_array_equal(matrix[2], glove("moving"))


def test_predict_prints_label_probability_and_word_effects(trained, capsys):
    result, uri, _ = trained
    code = cli(["--predict", "a superb film", "--model-uri", f"runs:/{result.run_id}/model",
                "--tracking-uri", uri])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("label: ") and "probability (pos): " in out
    header, *rows = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert header == ["word", "effect", "attention"]
    assert [r[0] for r in rows] == ["[UNK]", "superb", "film"]  # unseen "a" is kept as [UNK]
    assert abs(sum(float(r[2]) for r in rows) - 1) < 1e-3


def test_predict_classifies_a_file_like_single_sentences(trained, capsys, tmp_path):
    result, uri, _ = trained
    texts = ["a superb film", "a boring and weak film", "the cast was great"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    pd.DataFrame({"id": [1, 2, 3], "review": texts}).to_csv(tmp_path / "texts.csv", index=False)
    common = ["--model-uri", f"runs:/{result.run_id}/model", "--tracking-uri", uri]
    single = []
    for text in texts:
        assert cli(["--predict", text, *common]) == 0
        out = capsys.readouterr().out
        single.append(float(out.splitlines()[1].rsplit(" ", 1)[1]))
    for source, extra in (("texts.txt", []), ("texts.csv", ["--text-column", "review"])):
        output = tmp_path / source.replace(".", "_")
        code = cli(["--predict", str(tmp_path / source), *extra, *common, "--output", str(output)])
        assert code == 0 and len(capsys.readouterr().out.splitlines()) == 3
        table = pd.read_csv(output / "predictions.csv")
        assert table["text"].tolist() == texts
        np.testing.assert_allclose(table["probability"], single, atol=1e-4)
    assert cli(["--predict", str(tmp_path / "texts.csv"), *common]) == 2  # no "text" column
    assert "--text-column" in capsys.readouterr().err


def test_occlusion_effect_is_the_change_when_the_word_is_deleted(trained):
    result, _, _ = trained
    text = "the film was great and the cast 3"
    (item,) = explain_texts(result.model, [text])
    words = text.split()
    without = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    p = result.model.predict(np.array([text, *without], dtype=object), verbose=0).ravel()
    assert item.words == words
    np.testing.assert_allclose(item.effects, p[0] - p[1:], atol=1e-5)
    # Punctuation and capitals: the word "wasnt" is the piece "wasn't" of the raw text, which the
    # expert reads as "wasn t"; deleting the word deletes that piece for both parts.
    text = "The film, sadly, wasn't great !"
    (item,) = explain_texts(result.model, [text])
    pieces = text.split()
    without = [" ".join(pieces[:i] + pieces[i + 1 :]) for i in range(5)]  # "!" is no word
    p = result.model.predict(np.array([text, *without], dtype=object), verbose=0).ravel()
    assert item.words[:4] == ["the", "film", "[UNK]", "[UNK]"] and len(item.words) == 5
    np.testing.assert_allclose(item.probability, p[0], atol=1e-6)
    np.testing.assert_allclose(item.effects, p[0] - p[1:], atol=1e-5)


def test_the_deciding_word_has_the_largest_effect(tmp_path):
    """On data where one word decides the label, occlusion ranks that word first in every
    sentence, whatever its position (attention over BiLSTM states does not)."""
    data = reviews_csv(tmp_path / "reviews.csv", n=200)
    cfg = SentimentConfig(data=str(data), text_column="review", label_column="mood",
                          **TINY | dict(epochs=15, patience=0))  # fmt: skip
    result = run(SentimentTask(), cfg, RunOptions(tracking_uri=f"sqlite:///{tmp_path}/m.db",
                                                  log_model=False))  # fmt: skip
    deciding = ["great", "superb", "boring", "weak"]
    texts = [f"{w} the film was and the cast 2" for w in deciding[:2]] + [
        f"the film was and the cast 5 {w}" for w in deciding[2:]
    ]
    for word, item in zip(deciding, explain_texts(result.model, texts), strict=True):
        assert item.words[int(np.argmax(np.abs(item.effects)))] == word, item


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--predict", "   ", "--model-uri", "{model}"], "empty text"),
        (["--predict", "zzz qqq", "--model-uri", "{model}"], "none of the words"),
        (["--predict", "a film", "--model-uri", "runs:/0123456789abcdef/model"], "cannot load"),
    ],
)
def test_bad_predict_input_is_one_error_line(trained, args, message, capsys):
    result, uri, _ = trained
    args = [a.format(model=f"runs:/{result.run_id}/model") for a in args]
    code = cli([*args, "--tracking-uri", uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_predict_needs_a_model_uri(capsys):
    assert cli(["--predict", "a film"]) == 2
    assert "--predict needs --model-uri" in capsys.readouterr().err


def _bad_files(workdir: Path) -> dict[str, Path]:
    files = {
        "empty": workdir / "empty.csv",
        "nocol": workdir / "nocol.csv",
        "single": workdir / "single.csv",
        "latin1": workdir / "latin1.csv",
        "blank": workdir / "blank.csv",
    }
    files["empty"].write_text("")
    files["nocol"].write_text("text,stars\ngood,5\nbad,1\n")
    files["single"].write_text("text,label\n" + "good film,pos\n" * 20)
    files["latin1"].write_bytes("text,label\ncafé crème,pos\nbad,neg\n".encode("latin-1"))
    files["blank"].write_text("text,label\n  ,pos\n,neg\n")
    return files


BAD_INPUTS = {
    "empty file": ("empty", "is empty"),
    "missing column": ("nocol", "has no column(s) label"),
    "single class": ("single", "least two classes"),
    "non-UTF-8": ("latin1", "not UTF-8 text (byte 0xe9"),
    "empty texts": ("blank", "no row with both"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_a_failed_run(case, workdir, tracking_uri, capsys):
    name, message = BAD_INPUTS[case]
    path = _bad_files(workdir)[name]
    code = cli([*TINY_FLAGS, "--data", str(path), "--tracking-uri", tracking_uri,
                "--output", str(workdir / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    (failed,) = runs_of(tracking_uri, "sentiment")
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]
    assert not (workdir / "out" / "explanations.csv").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--embedding-dim", "64"], "--embeddings glove needs --embedding-dim 50"),
        (["--expert", "svm"], None),  # argparse rejects a value outside the choices
    ],
)
def test_bad_embedding_and_expert_flags_are_one_line_exit_2(
    flags, message, workdir, tracking_uri, capsys
):
    if message is None:
        with pytest.raises(SystemExit) as exit_:
            cli([*flags, "--tracking-uri", tracking_uri])
        assert exit_.value.code == 2 and "invalid choice: 'svm'" in capsys.readouterr().err
        return
    code = cli([*flags, "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    (failed,) = runs_of(tracking_uri, "sentiment")
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]


def test_negative_pretraining_epochs_are_one_line_exit_2_and_a_failed_run(
    workdir, tracking_uri, capsys
):
    code = cli(["--pretrain-epochs", "-1", "--tracking-uri", tracking_uri])
    message = "--pretrain-epochs must not be negative, got -1"
    assert code == 2 and capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    (failed,) = runs_of(tracking_uri, "sentiment")
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]


def test_k_fold_reports_mean_and_std(workdir, tracking_uri, capsys):
    data = reviews_csv(workdir / "reviews.csv", n=60)
    code = cli([*TINY_FLAGS, "--data", str(data), "--text-column", "review", "--label-column",
                "mood", "--folds", "3", "--no-log-model",
                "--tracking-uri", tracking_uri])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (logged,) = runs_of(tracking_uri, "sentiment")
    for name in ("accuracy", "f1", "roc_auc", "recurrent_accuracy", "expert_accuracy"):
        assert f"test_cv_{name}_mean" in logged.data.metrics  # each fold fits its own expert
        assert logged.data.metrics[f"test_cv_{name}_std"] >= 0


def test_rotten_tomatoes_builder_drops_plot_rows():
    texts, labels, classes = load_labelled_texts("rotten_tomatoes")
    assert classes == ["rotten", "fresh"]
    assert Counter(labels) == {"fresh": 7403, "rotten": 5405} and len(texts) == 12808


def test_unprepared_tfds_data_set_is_not_downloaded(tmp_path):
    with pytest.raises(DataError, match="imdb_reviews is not prepared"):
        load_labelled_texts("tfds:imdb_reviews", data_dir=str(tmp_path))


def test_help_lists_task_flags(capsys):
    with pytest.raises(SystemExit):
        cli(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--predict", "--model-uri", "--folds", "--text-column", "--cell"):
        assert flag in out


def test_pretraining_trains_the_classifiers_own_encoder(tmp_path):
    task, cfg, splits, model = untrained(tmp_path)
    before = [model.get_layer(n).get_weights()[0].copy() for n in ("embedding", "birnn_0")]
    vocabulary = splits.info["vectorizer"].get_vocabulary()
    np.testing.assert_array_equal(before[0][vocabulary.index("film")], glove("film"))  # from GloVe
    texts = splits.info["texts"][splits.info["parts"][0]]
    losses = pretrain(model, VECTORIZER, texts, epochs=3, batch_size=16, seed=0)
    assert losses[-1] < losses[0]
    after = [model.get_layer(n).get_weights()[0] for n in ("embedding", "birnn_0")]
    assert all(not np.allclose(b, a) for b, a in zip(before, after, strict=True))


def test_plot_synopses_are_cut_to_the_kept_length():
    chunks = plot_synopses(50)
    assert len(chunks) > 1097 and max(len(c.split()) for c in chunks) <= 50
