"""End-to-end checks of ``python -m pipelines.sentiment``: MLflow contents, reload, predict mode,
k-fold as child runs, the packaged data and proxy, GloVe init and vocabulary, the experts and
weights of the deployed model, every normaliser rule and every bad input."""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipelines.core import DataError, RunOptions, fitting, main, run
from pipelines.core.embeddings import GLOVE_VECTORS, GLOVE_WORDS, embedding_matrix
from pipelines.datasets.text_builders import load_labelled_texts, proxy_tweets
from pipelines.sentiment.normalise import mark_negation, normalise, segment, tokenise
from pipelines.sentiment.task import (
    SentimentConfig,
    SentimentTask,
    choose_weights,
    explain_texts,
    part_probabilities,
    with_training_texts,
)
from tests.conftest import runs_of


def cli(argv: list[str]) -> int:
    """The task's command line, in process."""
    return main(SentimentTask(), argv)


# The defaults' GloVe init (50d), vocabulary extension and experts, with a tiny network.
TINY = dict(epochs=2, units=8, attention_units=8, batch_size=16, explain=4, glove_words=500)
TINY_FLAGS = ["--epochs", "1", "--units", "8", "--attention-units", "8", "--glove-words", "500"]
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
def store(tmp_path_factory) -> str:
    """One MLflow store for the module (creating one costs seconds); tests that count runs
    use an experiment of their own in it."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    """The one model most tests share: the defaults, tiny, trained on the synthetic reviews."""
    workdir = tmp_path_factory.mktemp("sentiment")
    uri = store
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
                "embeddings", "experts", "glove_words", "word_dropout", "proxy",
                "extra_training"):  # fmt: skip
        assert key in logged.data.params
    assert logged.data.params["experts"] == "lexicon,nbsvm"
    for key in ("test_accuracy", "test_f1", "test_roc_auc", "baseline_majority_accuracy"):
        assert 0.0 <= logged.data.metrics[key] <= 1.0
    for part in ("network", "lexicon", "nbsvm"):  # each part of the deployed ensemble alone
        for name in ("accuracy", "f1", "roc_auc"):
            assert 0.0 <= logged.data.metrics[f"test_{part}_{name}"] <= 1.0
    weights = [logged.data.metrics[f"test_ensemble_weight_{p}"] for p in ("network", "lexicon",
                                                                          "nbsvm")]  # fmt: skip
    assert min(weights) >= 0 and abs(sum(weights) - 1) < 1e-6
    assert not any("tweets" in k for k in logged.data.metrics)  # a CSV's classes: no proxy
    client = mlflow.MlflowClient(uri)
    files = {
        f.path for d in (None, "results") for f in client.list_artifacts(logged.info.run_id, d)
    }
    assert {
        "word_effects.png",
        "results/explanations.html",
        "results/classes.json",
    } <= files
    page = mlflow.artifacts.load_text(f"runs:/{logged.info.run_id}/results/explanations.html")
    assert page.count("<p>") == 4 and "<span style=" in page
    table = pd.read_csv(workdir / "out" / "explanations.csv")
    assert list(table.columns) == ["text", "label", "predicted", "probability", "top_words"]


def test_logged_model_takes_raw_strings_and_predicts_the_same(trained):
    result, uri, _ = trained
    mlflow.set_tracking_uri(uri)
    texts = np.array(["the film was great", "boring and weak"], dtype=object)
    reloaded = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    np.testing.assert_allclose(
        reloaded.predict(texts, verbose=0), result.model.predict(texts, verbose=0), atol=1e-6
    )
    # The logged model is the deployed ensemble, its parts and vocabularies included.
    before, after = (
        part_probabilities(m, np.array(PROBES, object)) for m in (result.model, reloaded)
    )
    assert set(after) == {"", "network_", "lexicon_", "nbsvm_"}
    for part in after:
        np.testing.assert_allclose(after[part], before[part], atol=1e-6)


def untrained(tmp_path, **overrides):
    """Task, config, splits and a freshly built network on the tiny review file."""
    data = reviews_csv(tmp_path / "reviews.csv")
    cfg = SentimentConfig(data=str(data), text_column="review", label_column="mood",
                          **TINY | overrides)  # fmt: skip
    task = SentimentTask()
    splits = task.data(cfg)
    return task, cfg, splits, task.build_model(cfg, splits)


def test_deployed_model_is_the_weighted_mean_of_its_parts(tmp_path):
    task, cfg, splits, network = untrained(tmp_path, ensemble_weights="2,1,1")
    deployed = task.deployable(network, splits, cfg)
    texts = np.array([*splits.info["texts"][splits.info["parts"][2]], *PROBES], dtype=object)
    parts = part_probabilities(deployed, texts)
    np.testing.assert_allclose(parts[""], deployed.predict(texts, verbose=0).ravel(), atol=1e-6)
    mixed = 0.5 * parts["network_"] + 0.25 * parts["lexicon_"] + 0.25 * parts["nbsvm_"]
    np.testing.assert_allclose(parts[""], mixed, atol=1e-6)
    ids = splits.info["vectorizer"](tf.constant(texts.tolist()))
    np.testing.assert_allclose(parts["network_"], network.predict(ids, verbose=0).ravel(),
                               atol=1e-6)  # fmt: skip
    for name in ("expert_lexicon", "expert_nbsvm", "ensemble"):
        assert not deployed.get_layer(name).trainable
    # The Keras featurisation and unit reproduce the scikit-learn NB-SVM they were fitted from.
    (lexicon, nbsvm) = splits.info["experts"]
    weight = dict(zip(nbsvm.vectorizer.get_vocabulary(), nbsvm.weights, strict=True))
    assert (
        min(weight[w] for w in ("great", "superb")) > 0 > max(weight[w] for w in ("awful", "dull"))
    )
    # The lexicon expert knows words training never saw, and negation turns them around.
    words = dict(zip(lexicon.vectorizer.get_vocabulary(), lexicon.weights, strict=True))
    assert (
        words["excellent"] > 0 > words["terrible"] and words["neg_excellent"] < words["excellent"]
    )
    assert words["smiling"] > 0 > words["frowning"]  # the emoticons' words


def test_ensemble_weights_are_chosen_on_held_out_sets_by_mean_accuracy():
    """Part 0 is right on set A only, part 1 on both: all weight goes to part 1."""
    labels = np.array([1, 0, 1, 0])
    on_a = np.array([[0.9 if y else 0.1, 0.8 if y else 0.2] for y in labels])
    on_b = np.array([[0.1 if y else 0.9, 0.7 if y else 0.3] for y in labels])
    weights = choose_weights([on_a, on_b], [labels, labels])
    assert weights[1] > 0.5 and abs(sum(weights) - 1) < 1e-9


def test_expert_none_deploys_the_network_alone(tmp_path):
    alone = dict(experts="none", embeddings="none", embedding_dim=8, embedding_training="full")
    task, cfg, splits, network = untrained(tmp_path, **alone)
    deployed = task.deployable(network, splits, cfg)
    assert not any(layer.name.startswith("expert_") for layer in deployed.layers)
    metrics = task.evaluate(deployed, splits, cfg).metrics
    assert metrics["network_accuracy"] == metrics["accuracy"]
    assert not any(name.startswith("nbsvm_") for name in metrics)
    assert deployed.get_layer("network").get_layer("embedding").get_weights()[0].shape[1] == 8


def test_vocabulary_holds_glove_words_beyond_training_and_they_keep_their_vectors(tmp_path):
    task, cfg, splits, model = untrained(tmp_path, word_dropout=0.0)
    vocabulary = splits.info["vectorizer"].get_vocabulary()
    weights = model.get_layer("embedding").get_weights()[0]
    for word in ("film", "great", "boring", "the", "good"):  # "good": never in training
        np.testing.assert_array_equal(weights[vocabulary.index(word)], glove(word))
    assert len(vocabulary) >= 500 and "xxurl" in vocabulary
    np.testing.assert_allclose(glove("the")[:3], [0.418, 0.24968, -0.41242])  # glove.6B.50d.txt
    initial = np.random.default_rng(0).uniform(-0.05, 0.05, (4, 50)).astype("float32")
    matrix = embedding_matrix(["", "[UNK]", "moving", "zzqxjv"], initial)
    np.testing.assert_array_equal(matrix[[0, 1, 3]], initial[[0, 1, 3]])
    np.testing.assert_array_equal(matrix[2], glove("moving"))
    # Training moves only the correction of words it saw: an unseen word stays GloVe's.
    assert not model.get_layer("embedding").trainable
    ids = splits.info["vectorizer"](tf.constant(["the film was great"]))
    model.fit(ids, np.ones(1), epochs=2, verbose=0)
    correction = model.get_layer("embedding_correction").get_weights()[0]
    assert np.abs(correction[vocabulary.index("great")]).max() > 0
    assert np.abs(correction[vocabulary.index("good")]).max() == 0


def test_predict_prints_label_probability_and_word_effects(trained, capsys):
    result, uri, _ = trained
    code = cli(["--predict", "a superb film", "--model-uri", f"runs:/{result.run_id}/model",
                "--tracking-uri", uri])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("label: ") and "probability (pos): " in out
    header, *rows = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert header == ["word", "effect"]
    assert [r[0] for r in rows] == ["a", "superb", "film"]


def test_predict_classifies_a_file_like_single_sentences(trained, capsys, tmp_path):
    """A text file and a CSV, in batches of 2: the probabilities of one-sentence --predict
    (the CLI for the first, the logged model one text at a time for all), labels by them, and
    the top words only when explaining."""
    result, uri, _ = trained
    texts = ["a superb film", "a boring and weak film", "the cast was great"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n\n")
    pd.DataFrame({"id": [1, 2, 3], "review": texts}).to_csv(tmp_path / "texts.csv", index=False)
    common = ["--model-uri", f"runs:/{result.run_id}/model", "--tracking-uri", uri]
    assert cli(["--predict", texts[0], *common]) == 0
    first = float(capsys.readouterr().out.splitlines()[1].rsplit(" ", 1)[1])
    single = [float(result.model.predict(np.array([t], object), verbose=0)[0, 0]) for t in texts]
    assert first == pytest.approx(single[0], abs=1e-4)
    for source, extra in (
        ("texts.txt", []),
        ("texts.csv", ["--text-column", "review", "--explain", "0"]),
    ):
        output = tmp_path / source.replace(".", "_")
        code = cli(["--predict", str(tmp_path / source), *extra, *common, "--batch-size", "2",
                    "--output", str(output)])  # fmt: skip
        captured = capsys.readouterr()
        assert code == 0 and len(captured.out.splitlines()) == 3
        assert "classified 3/3" in captured.err  # the progress line, batch by batch
        table = pd.read_csv(output / "predictions.csv")
        assert table["text"].tolist() == texts
        np.testing.assert_allclose(table["probability"], single, atol=1e-5)
        assert table["label"].tolist() == [["neg", "pos"][p >= 0.5] for p in single]
        assert ("top_words" in table) == (source == "texts.txt")
    words = pd.read_csv(tmp_path / "texts_txt" / "predictions.csv")["top_words"]
    assert all(set(w.split()) <= set(t.split()) for w, t in zip(words, texts, strict=True))


def test_occlusion_effect_is_the_change_when_the_word_is_deleted(trained):
    result, _, _ = trained
    for text in ("the film was great and the cast 3", "The film, sadly, wasn't GREAT !!! :("):
        (item,) = explain_texts(result.model, [text])
        words = text.split()
        without = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
        p = result.model.predict(np.array([text, *without], dtype=object), verbose=0).ravel()
        assert item.words == words
        np.testing.assert_allclose(item.probability, p[0], atol=1e-6)
        np.testing.assert_allclose(item.effects, p[0] - p[1:], atol=1e-5)


def test_explain_0_explains_nothing_and_writes_no_explanation(trained, tmp_path):
    """--explain 0 crashed at the end of training (Keras cannot predict an empty batch)."""
    result, _, _ = trained
    assert explain_texts(result.model, []) == []
    data = reviews_csv(tmp_path / "reviews.csv")
    cfg = SentimentConfig(
        data=str(data), text_column="review", label_column="mood", **(TINY | {"explain": 0})
    )
    report = SentimentTask().evaluate(result.model, SentimentTask().data(cfg), cfg)
    assert "word_effects" not in report.figures and "explanations" not in report.tables
    assert 0 <= report.metrics["accuracy"] <= 1


def test_the_deciding_word_has_the_largest_effect(trained):
    """On data where one word decides the label, occlusion ranks that word first in every
    sentence, whatever its position."""
    result, _, _ = trained
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
        (["--predict", "zzzqqq qqqzzz", "--model-uri", "{model}"], "none of the words"),
        (["--predict", "a film", "--model-uri", "runs:/0123456789abcdef/model"], "cannot load"),
        (["--predict", "{dir}/empty.txt", "--model-uri", "{model}"], "empty.txt contains no text"),
        (["--predict", "{dir}/blank.csv", "--model-uri", "{model}"], "blank.csv is empty"),
        (["--predict", "{dir}/data.bin", "--model-uri", "{model}"], "data.bin is a binary file"),
        (["--predict", "{dir}/image.png", "--model-uri", "{model}"], "image.png is not UTF-8"),
        (["--predict", "{dir}/texts.csv", "--text-column", "body", "--model-uri", "{model}"],
         "texts.csv has no column(s) body; columns are id, review"),
    ],
)  # fmt: skip
def test_bad_predict_input_is_one_error_line(trained, args, message, capsys, tmp_path):
    result, uri, _ = trained
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "blank.csv").write_text("")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01text\x00")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "texts.csv").write_text("id,review\n1,a superb film\n")
    args = [a.format(model=f"runs:/{result.run_id}/model", dir=tmp_path) for a in args]
    code = cli([*args, "--tracking-uri", uri, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out" / "predictions.csv").exists()


# ---- the normaliser, rule by rule ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The Film", "the film"),  # case folded
        ("I LOVE it", "i xxup love it"),  # a word in capitals is emphasis
        ("see https://t.co/x1 and www.a.com now", "see xxurl and xxurl now"),
        ("@bob_1 thanks", "xxuser thanks"),
        ("#NotHappy #bestdayever", "not happy best day ever"),  # by capitals, by word ranks
        ("great :) bad :( <3", "great smiling bad frowning love"),
        ("ok \U0001f602 \U0001f44d\U0001f3fd", "ok face with tears of joy thumbs up sign"),
        ("soooo gooood yessss", "xxelong so xxelong good xxelong yes"),
        ("wow!!! really?", "wow ! xxexcl really ?"),
        ("don't dont it's can't", "do n't do n't it 's ca n't"),
        ("Pete\u2019s film", "pete 's film"),  # curly apostrophe
    ],
)
def test_each_normaliser_rule(text, tokens):
    assert normalise(text) == tokens


def test_negation_scope_ends_at_punctuation_contrast_and_emoticons():
    assert tokenise("not good at all. great", negation=True) == [
        "not", "neg_good", "neg_at", "neg_all", ".", "great"
    ]  # fmt: skip
    assert normalise("I don't like it but love the cast", negation=True) == (
        "i do n't neg_like neg_it but love the cast"
    )
    assert normalise("never again :( fine", negation=True) == "never neg_again frowning fine"
    assert mark_negation(["no", "xxup", "fun"]) == ["no", "xxup", "neg_fun"]


def test_hashtag_segmentation_prefers_frequent_words():
    assert segment("thebestmovieever") == ["the", "best", "movie", "ever"]


def test_proxy_tweets_are_balanced_disjoint_halves_and_training_tweets_avoid_them():
    tweets = proxy_tweets(per_class=50)
    for half in ("dev", "test"):
        texts, labels = tweets[half]
        assert len(texts) == 100 and labels.sum() == 50
    assert not set(tweets["dev"][0]) & set(tweets["test"][0])
    train, train_labels = tweets["train"]
    assert len(train) > 4000 and 0.3 < train_labels.mean() < 0.5
    assert not set(train) & (set(tweets["dev"][0]) | set(tweets["test"][0]))
    assert not any("@united" in text.lower() or "@jetblue" in text.lower() for text in train)
    airline = np.array(tweets["test"][0], dtype=object)[tweets["airline"]]
    assert 10 < len(airline) < 90 and all("@" in text for text in airline)


def test_extra_training_texts_join_the_training_part_only():
    texts = np.array(["a", "b", "c", "d"], dtype=object)
    parts = (np.array([0, 1]), np.array([2]), np.array([3]))
    texts, labels, (train, validation, test) = with_training_texts(
        texts, np.array([1, 0, 1, 0]), parts, ["e", "f"], np.array([0, 1])
    )
    assert texts[train].tolist() == ["a", "b", "e", "f"] and labels[train].tolist() == [1, 0, 0, 1]
    assert texts[validation].tolist() == ["c"] and texts[test].tolist() == ["d"]
    assert SentimentConfig().trains_on_tweets  # the packaged default
    assert not SentimentConfig(data="mine.csv").trains_on_tweets  # a user's classes: never


def test_films_split_holds_out_whole_films():
    groups = np.array([f"film{i // 5}" for i in range(200)], dtype=object)
    labels = np.arange(200) % 2
    cfg = SentimentConfig(split="films", data="rotten_tomatoes")
    train, validation, test = SentimentTask().split(cfg, labels, groups)
    sides = [set(groups[part]) for part in (train, validation, test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert len(train) + len(validation) + len(test) == 200 and 30 <= len(test) <= 50


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
def test_bad_input_is_one_line_exit_2_and_a_failed_run(case, workdir, store, capsys):
    name, message = BAD_INPUTS[case]
    path = _bad_files(workdir)[name]
    code = cli([*TINY_FLAGS, "--data", str(path), "--tracking-uri", store, "--experiment", case,
                "--output", str(workdir / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    (failed,) = runs_of(store, case)
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]
    assert not (workdir / "out" / "explanations.csv").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--embedding-dim", "64"], "--embeddings glove needs --embedding-dim 50"),
        (["--experts", "svm"], "unknown --experts svm"),
        (["--ensemble-weights", "1,2"], "--ensemble-weights needs 3 non-negative numbers"),
        (["--split", "films", "--data", "x.csv"], "--split films needs --data rotten_tomatoes"),
        (["--fold", "4", "--folds", "3"], "--fold 4 is outside --folds 3"),
    ],
)
def test_bad_flags_are_one_line_exit_2_and_a_failed_run(flags, message, store, capsys):
    experiment = " ".join(flags)
    code = cli([*flags, "--tracking-uri", store, "--experiment", experiment])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    (failed,) = runs_of(store, experiment)
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]


def test_k_fold_trains_each_fold_as_a_child_run_honouring_the_run_flags(
    workdir, store, capsys, monkeypatch
):
    """``--folds 3 --strategy mirrored --output DIR`` goes through the runner's folds: three
    FINISHED child runs under one parent, each fold fitted under MirroredStrategy inside its
    own child run, and DIR holding the parent's summary and nothing else."""
    fits = []
    fit_model = fitting.fit_model

    def recorded(model, *args, **kwargs):
        fits.append((mlflow.active_run().info.run_id, model.distribute_strategy))
        return fit_model(model, *args, **kwargs)

    monkeypatch.setattr(fitting, "fit_model", recorded)  # every fit of a run goes through it
    data = reviews_csv(workdir / "reviews.csv", n=40)
    out = workdir / "out"
    code = cli([*TINY_FLAGS, "--data", str(data), "--text-column", "review", "--label-column",
                "mood", "--folds", "3", "--no-log-model", "--strategy", "mirrored", "--output",
                str(out), "--tracking-uri", store, "--experiment", "folds"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    runs = runs_of(store, "folds")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted(
        (r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.data.tags["fold"]
    )
    assert parent.info.status == "FINISHED" and f"MLflow run {parent.info.run_id}" in captured.out
    assert [c.data.tags["fold"] for c in children] == ["fold1", "fold2", "fold3"]
    # Children are named by the parent and their fold once (not "...-fold=1-fold1").
    assert [c.info.run_name for c in children] == [
        f"{parent.info.run_name}-fold{k}" for k in (1, 2, 3)
    ]
    for k, child in enumerate(children, 1):
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert (child.data.params["fold"], child.data.params["folds"]) == (str(k), "3")
        assert child.data.params["precision"] == "float32"
        assert child.data.params["strategy"] == "mirrored"
    assert (parent.data.params["fold"], parent.data.params["folds"]) == ("0", "3")
    assert parent.data.params["precision"] == "float32"
    assert (parent.data.params["strategy"], parent.data.params["jit_compile"]) == (
        "mirrored",
        "False",
    )
    # --strategy mirrored: one fit per fold (sentiment has no stages), in that fold's child run,
    # on a model built under a MirroredStrategy (the default strategy without the flag).
    assert sorted(run_id for run_id, _ in fits) == sorted(c.info.run_id for c in children)
    assert all(type(s) is tf.distribute.MirroredStrategy for _, s in fits), fits
    for name in ("accuracy", "network_accuracy", "nbsvm_accuracy", "lexicon_accuracy"):
        values = [c.data.metrics[f"test_{name}"] for c in children]  # each fold its own experts
        assert parent.data.metrics[f"test_{name}"] == pytest.approx(np.mean(values))
    # --output: the parent's folds table and metrics, published whole; no fold checkpoints
    assert parent.data.tags["output"] == str(out.resolve())
    assert sorted(p.name for p in out.iterdir()) == ["folds.csv", "metrics.json", "run.json"]
    state = json.loads((out / "run.json").read_text())
    assert state["run_id"] == parent.info.run_id
    assert state["files"] == ["folds.csv", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == pytest.approx(parent.data.metrics)
    table = pd.read_csv(out / "folds.csv")
    assert table["fold"].tolist() == ["fold1", "fold2", "fold3"]
    assert table["test_accuracy"].tolist() == pytest.approx(
        [c.data.metrics["test_accuracy"] for c in children]
    )
    # every example is tested exactly once over the folds
    cfg = SentimentConfig(data=str(data), text_column="review", label_column="mood", folds=3)
    labels = SentimentTask().load(cfg)[1]
    tests = [SentimentTask().split(replace(cfg, fold=k), labels, None)[2] for k in (1, 2, 3)]
    assert sorted(np.concatenate(tests).tolist()) == list(range(40))


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
    for flag in ("--predict", "--model-uri", "--folds", "--text-column", "--cell", "--experts",
                 "--proxy", "--extra-training", "--glove-words"):  # fmt: skip
        assert flag in out
