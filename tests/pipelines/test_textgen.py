"""Checks of ``python -m pipelines.textgen``: sampling, the n-gram baseline, stateful generation,
MLflow contents, the generate CLI and every bad input."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import tensorflow as tf

from models import language_model, stateful_twin
from pipelines.core import RunOptions, main, run
from pipelines.textgen.ngram import KneserNey
from pipelines.textgen.sampling import next_token_distribution, sample
from pipelines.textgen.task import TextgenConfig, TextgenTask, learning_schedule
from tests.conftest import runs_of


def cli(argv: list[str]) -> int:
    """The task's command line, in process."""
    return main(TextgenTask(), argv)


TINY = dict(epochs=1, units=16, layers=1, embedding_dim=8, seq_length=20, stride=20,
            batch_size=32, length=30, sample_temperatures=[0.5, 1.0])  # fmt: skip
TINY_FLAGS = ["--epochs", "1", "--units", "8", "--layers", "1", "--seq-length", "20",
              "--length", "10"]  # fmt: skip


def verse(path: Path, lines: int = 120) -> Path:
    rng = np.random.default_rng(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis"]
    text = "\n".join(" ".join(rng.choice(words, size=6)) + "," for _ in range(lines))
    path.write_text(text + "\n", encoding="utf-8")
    return path


# ---- sampling ----------------------------------------------------------------------------------
LOGITS = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05]))


def test_temperature_one_is_the_softmax_and_zero_is_argmax():
    np.testing.assert_allclose(next_token_distribution(LOGITS), np.exp(LOGITS), atol=1e-12)
    assert next_token_distribution(LOGITS, temperature=0).tolist() == [1, 0, 0, 0, 0]
    near_zero = next_token_distribution(LOGITS, temperature=1e-3)
    assert near_zero[0] > 1 - 1e-9
    rng = np.random.default_rng(0)
    assert {sample(LOGITS, rng, temperature=0) for _ in range(20)} == {0}


def test_top_k_and_top_p_restrict_the_support():
    top2 = next_token_distribution(LOGITS, top_k=2)
    np.testing.assert_allclose(top2, [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0])
    nucleus = next_token_distribution(LOGITS, top_p=0.8)  # 0.5 + 0.2 < 0.8 <= + 0.15
    assert (nucleus > 0).tolist() == [True, True, True, False, False]
    assert abs(nucleus.sum() - 1) < 1e-12
    rng = np.random.default_rng(1)
    assert {sample(LOGITS, rng, top_k=2) for _ in range(200)} == {0, 1}


# ---- n-gram baseline ---------------------------------------------------------------------------
def test_kneser_ney_unigram_by_hand():
    model = KneserNey(1, vocab_size=3).fit(np.array([0, 0, 1]))  # D = n1/(n1+2n2) = 1/3
    probs = [model.prob((), w) for w in range(3)]
    np.testing.assert_allclose(probs, [17 / 27, 8 / 27, 2 / 27])


def test_kneser_ney_bigram_by_hand():
    model = KneserNey(2, vocab_size=3).fit(np.array([0, 1, 0, 1, 0, 2]))
    # continuation counts are all 1 (D=0.5 fallback): P1 = 1/3 each; bigram D = 1/(1+2*2)
    backoff = 0.2 * 2 / 3 * (1 / 3)
    np.testing.assert_allclose(
        [model.prob((0,), w) for w in range(3)],
        [backoff, 1.8 / 3 + backoff, 0.8 / 3 + backoff],
    )
    assert model.prob((2,), 1) == pytest.approx(1 / 3)  # unseen context backs off
    np.testing.assert_allclose(model.probabilities(np.array([0, 1, 2]), first=1),
                               [model.prob((0,), 1), model.prob((1,), 2)])  # fmt: skip


def test_kneser_ney_distributions_sum_to_one():
    ids = np.random.default_rng(0).integers(0, 6, size=400)
    model = KneserNey(4, vocab_size=7).fit(ids)
    for history in [(), (1,), (2, 3), (4, 5, 0), (6, 6, 6)]:
        assert sum(model.prob(history, w) for w in range(7)) == pytest.approx(1.0)


# ---- stateful generation -----------------------------------------------------------------------
def test_stateful_twin_step_by_step_equals_the_whole_sequence():
    model = language_model(12, units=8, layers=2, embedding_dim=4)
    ids = np.random.default_rng(0).integers(2, 12, size=(1, 9)).astype("int32")
    whole = np.asarray(model(ids))
    twin = stateful_twin(model)
    steps = [np.asarray(twin(ids[:, :4]))[0]]
    steps += [np.asarray(twin(ids[:, t : t + 1]))[0] for t in range(4, 9)]
    np.testing.assert_allclose(np.concatenate(steps), whole[0], atol=1e-5)


# ---- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("textgen")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = TextgenConfig(data=str(verse(workdir / "verse.txt")), **TINY)
    result = run(TextgenTask(), cfg, RunOptions(tracking_uri=uri, output=str(workdir / "out")))
    return result, uri, workdir


def test_run_is_fully_tracked(trained):
    result, uri, _ = trained
    (logged,) = runs_of(uri, "textgen")
    assert logged.info.status == "FINISHED" and logged.data.tags["task"] == "textgen"
    for key in ("cell", "units", "layers", "level", "seq_length", "ngram_order", "data"):
        assert key in logged.data.params
    metrics = logged.data.metrics
    assert 0 < metrics["test_bits_per_char"] < 10
    assert 0 < metrics["baseline_ngram_test_bits_per_char"] < np.log2(18)  # beats uniform
    client = mlflow.MlflowClient(uri)
    files = {
        f.path for d in (None, "results") for f in client.list_artifacts(logged.info.run_id, d)
    }
    assert {"test_bits.png", "results/samples.json", "results/samples.txt",
            "results/vocabulary.json"} <= files  # fmt: skip
    samples = mlflow.artifacts.load_dict(f"runs:/{logged.info.run_id}/results/samples.json")
    assert [s["temperature"] for s in samples["samples"]][:2] == [0.5, 1.0]
    assert all(len(s["text"]) == 30 for s in samples["samples"])


def test_logged_model_reloads_and_predicts_the_same(trained):
    result, uri, _ = trained
    mlflow.set_tracking_uri(uri)
    reloaded = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    ids = np.array([[3, 4, 5, 2, 6]], np.int32)
    np.testing.assert_allclose(
        reloaded.predict(ids, verbose=0), result.model.predict(ids, verbose=0), atol=1e-5
    )


def test_generate_cli_continues_the_prompt(trained, capsys):
    result, uri, _ = trained
    args = ["--predict", "to be", "--length", "25", "--model-uri", f"runs:/{result.run_id}/model",
            "--tracking-uri", uri, "--temperature", "0"]  # fmt: skip
    assert cli(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("to be") and len(first.rstrip("\n")) >= 5
    assert cli([*args, "--seed", "7"]) == 0  # argmax ignores the seed
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("to be ÿ€", "characters never seen in training: 'ÿ', '€'"), ("  ", "non-empty prompt")],
)
def test_bad_prompt_is_one_error_line(trained, prompt, message, capsys):
    result, uri, _ = trained
    code = cli(["--predict", prompt, "--model-uri", f"runs:/{result.run_id}/model",
                "--tracking-uri", uri])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_word_level_reports_perplexity(workdir, tracking_uri, capsys):
    data = verse(workdir / "verse.txt", lines=300)
    code = cli([*TINY_FLAGS, "--level", "word", "--seq-length", "8", "--stride", "4", "--data",
                str(data), "--tracking-uri", tracking_uri])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (logged,) = runs_of(tracking_uri, "textgen")
    for name in ("test_perplexity", "baseline_ngram_test_perplexity"):
        assert 1 < logged.data.metrics[name] < 100  # i.i.d. words: near the 13-word vocabulary


BAD_TEXTS = {
    "empty text": (b" \n\n ", "contains no text"),
    "non-UTF-8": (b"to be or not\n\xff\xfe", "not UTF-8 text (byte 0xff at offset 13, line 2)"),
    "too short": (b"to be or not to be", "fewer than one window"),
}


@pytest.mark.parametrize("case", BAD_TEXTS)
def test_bad_text_is_one_line_exit_2_and_a_failed_run(case, workdir, tracking_uri, capsys):
    content, message = BAD_TEXTS[case]
    (workdir / "bad.txt").write_bytes(content)
    code = cli([*TINY_FLAGS, "--data", str(workdir / "bad.txt"), "--tracking-uri", tracking_uri,
                "--output", str(workdir / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    (failed,) = runs_of(tracking_uri, "textgen")
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]
    assert not (workdir / "out" / "metrics.json").exists()


def test_generate_needs_a_model_uri(capsys):
    assert cli(["--predict", "to be"]) == 2
    assert "--predict needs --model-uri" in capsys.readouterr().err


def test_cosine_schedule_decays_to_five_percent_by_the_last_epoch():
    train = tf.data.Dataset.range(10).batch(2)  # 5 steps per epoch
    cfg = TextgenConfig(epochs=3, learning_rate=1e-2)
    schedule = learning_schedule(cfg.learning_rate, cfg, train)
    assert float(schedule(0)) == pytest.approx(1e-2)
    assert float(schedule(7)) < 1e-2
    assert float(schedule(15)) == pytest.approx(5e-4)
    constant = TextgenConfig(lr_schedule="constant")
    assert learning_schedule(1e-2, constant, train) == 1e-2


def test_output_dropout_out_of_range_is_one_error(capsys):
    assert cli(["--output-dropout", "1.0"]) == 2
    assert "--output-dropout must be in [0, 1)" in capsys.readouterr().err
