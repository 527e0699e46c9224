"""Checks of `python -m pipelines.speech`: runs, front-end, synthesis, decoding, bad input."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.special
import scipy.stats

from pipelines.core import DataError, RunOptions, main, run
from pipelines.speech import adaptation, augment, features
from pipelines.speech.corpora import load_corpus, read_folder
from pipelines.speech.features import audio_batch
from pipelines.speech.task import (
    SpeechConfig,
    SpeechTask,
    aligned_confusion,
    augmentation,
    batched,
    class_probabilities,
    ctc_transcripts,
    frames_model,
    predict_frames,
    resolve_normalization,
    transcript_errors,
)
from pipelines.speech.utterances import (
    DIGITS,
    Corpus,
    Utterances,
    as_utterances,
    connected_utterances,
    speaker_normalized,
    split_speaker,
)
from tests.conftest import logged_models, runs_of
from tests.pipelines import fsdd_sample

TINY = dict(epochs=1, units=8, layers=1, utterances=48, conv_filters=8, batch_size=32)
EVERY_SPEAKER = ["--mode", "isolated", "--split", "speaker", "--held-out-speaker", "all"]


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def tone(digit: int, rate: int = 8000, seconds: float = 0.3, seed: int = 0) -> np.ndarray:
    """A 'digit' the tests can write: a tone whose pitch encodes it, plus a little noise."""
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(seed).normal(scale=0.01, size=len(t))
    return 0.5 * np.sin(2 * np.pi * (300 + 150 * digit) * t) * np.hanning(len(t)) + noise


def wav_folder(root: Path, lines: list[str] | None = None) -> Path:
    """Two speakers x digits 0-2 x 2 takes, and their transcripts."""
    entries = []
    for speaker in ("ann", "bob"):
        for digit in range(3):
            for take in range(2):
                name = f"{speaker}/{digit}_{take}.wav"
                write_wav(root / name, tone(digit, seed=take))
                entries.append(f"{name} {digit}")
    (root / "transcripts.txt").write_text("\n".join(lines or entries) + "\n")
    return root


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory) -> str:
    """One MLflow store for the module (creating a SQLite store is slow); runs differ by
    experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('speech_store') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def ctc_run(tmp_path_factory, shared_store):
    out = tmp_path_factory.mktemp("speech_ctc") / "out"
    cfg = SpeechConfig(**TINY)
    result = run(SpeechTask(), cfg, RunOptions(tracking_uri=shared_store, output=str(out)))
    return result, cfg, shared_store, out


@pytest.fixture(scope="module")
def isolated_run(shared_store):
    cfg = SpeechConfig(
        mode="isolated",
        split="speaker",
        held_out_speaker="speaker_3",
        adapt=1,
        adapt_epochs=1,
        adapt_confidence=0.0,  # every recording of the new voice becomes a pseudo-label
        **TINY,
    )
    opts = RunOptions(tracking_uri=shared_store, experiment="speech-isolated")
    return run(SpeechTask(), cfg, opts), cfg, shared_store


def _artifacts(uri: str, run_id: str) -> set[str]:
    root = Path(mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=uri))
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_ctc_run_is_fully_tracked(ctc_run):
    result, _, uri, out = ctc_run
    (logged,) = runs_of(uri, "speech")
    assert logged.info.status == "FINISHED"
    tags = logged.data.tags
    assert (tags["task"], tags["mode"], tags["split"], tags["data"]) == (
        "speech",
        "ctc",
        "random",
        "fsdd",
    )
    for key in (
        "cell",
        "units",
        "layers",
        "dropout",
        "learning_rate",
        "conv_filters",
        "beam_width",
        "utterances",
    ):
        assert key in logged.data.params
    for key in (
        "test_wer",
        "test_cer",
        "test_beam_wer",
        "test_beam_cer",
        "test_utterance_accuracy",
    ):
        assert 0.0 <= logged.data.metrics[key] <= 10.0
    names = _artifacts(uri, logged.info.run_id)
    for name in (
        "utterance.png",
        "confusion.png",
        "results/predictions.csv",
        "results/data.json",
        "config.json",
    ):
        assert name in names
    assert set(logged_models(uri, logged)) == {"model"}
    assert (out / "predictions.csv").is_file() and (out / "metrics.json").is_file()


def test_logged_ctc_model_takes_audio_reloads_and_predicts_the_same(ctc_run):
    result, _, uri, _ = ctc_run
    (logged,) = runs_of(uri, "speech")
    mlflow.set_tracking_uri(uri)
    reloaded = mlflow.keras.load_model(f"runs:/{logged.info.run_id}/model")
    waves = [tone(3, seconds=0.6).astype(np.float32), tone(7, seconds=0.35).astype(np.float32)]
    audio = audio_batch(waves)
    np.testing.assert_allclose(
        reloaded.predict(audio, verbose=0), result.model.predict(audio, verbose=0), atol=1e-5
    )
    # The audio model is the front-end and the frames model: the same numbers either way.
    frames = features.waveform_features(waves)
    for a, b in zip(predict_frames(frames_model(reloaded), frames, 8), reloaded.predict(audio)):
        np.testing.assert_allclose(a, b[: len(a)], atol=1e-4)
    alone = reloaded.predict(audio_batch(waves[1:]), verbose=0)[0]  # padding changes nothing
    np.testing.assert_allclose(
        alone, reloaded.predict(audio, verbose=0)[1][: len(alone)], atol=1e-4
    )


def test_sample_wavs_score_end_to_end_what_their_shipped_frames_score(ctc_run, isolated_run):
    names, waves, _ = fsdd_sample.recordings()
    rows = [fsdd_sample.shipped()[0][i] for i in fsdd_sample.matches()[0]]
    ctc = ctc_run[0].model  # per-utterance normalisation: each recording alone
    from_audio = ctc.predict(audio_batch(waves), verbose=0)
    for logits, frames in zip(from_audio, predict_frames(frames_model(ctc), rows, 64)):
        np.testing.assert_allclose(logits[: len(frames)], frames, atol=1e-3)
    isolated = isolated_run[0].model  # speaker CMVN: one voice per batch
    for speaker in ("george", "theo"):
        index = [i for i, name in enumerate(names) if name.split("_")[1] == speaker]
        voice = Corpus(speaker, [rows[i] for i in index], list(DIGITS), np.array([speaker] * 10),
                       list(DIGITS))  # fmt: skip
        expected = class_probabilities(
            frames_model(isolated), as_utterances(speaker_normalized(voice)), 10
        )
        heard = isolated.predict(audio_batch([waves[i] for i in index]), verbose=0)
        np.testing.assert_allclose(heard, expected, atol=1e-4)


def _recordings_folder(root: Path) -> Path:
    """Three FSDD sample recordings in two speaker folders, one of them resampled to 16 kHz."""
    names, waves, _ = fsdd_sample.recordings()
    for i in (0, 6, 1):  # 0_george_7, 1_george_7, 0_jackson_7
        write_wav(root / names[i].split("_")[1] / f"{names[i]}.wav", waves[i])
    write_wav(root / "other" / "tone.wav", tone(4, rate=16000), rate=16000)
    return root


def test_predict_transcribes_each_wav_of_a_folder(ctc_run, isolated_run, tmp_path, capsys):
    uri = ctc_run[2]
    folder = _recordings_folder(tmp_path / "recordings")
    for result, mode in ((ctc_run[0], "ctc"), (isolated_run[0], "isolated")):
        out = tmp_path / f"out_{mode}"
        argv = ["--model-uri", f"runs:/{result.run_id}/model", "--predict", str(folder)]
        code = main(SpeechTask(), [*argv, "--output", str(out), "--tracking-uri", uri])
        printed = capsys.readouterr().out.strip().splitlines()
        assert code == 0 and len(printed) == 4
        table = pd.read_csv(out / "predictions.csv", dtype={"prediction": str})
        assert table["file"].tolist() == sorted(
            str(p.relative_to(folder)) for p in folder.rglob("*.wav")
        )
        assert table["speaker"].tolist() == ["george"] * 2 + ["jackson", "other"]
        assert [line.split("\t")[0] for line in printed] == table["file"].tolist()
        if mode == "isolated":  # one voice per batch, as training normalised it
            george = audio_batch([features.read_wav(folder / f) for f in table["file"][:2]])
            expected = result.model.predict(george, verbose=0).argmax(axis=1)
            assert table["prediction"][:2].tolist() == [DIGITS[k] for k in expected]
            assert table["confidence"].between(0, 1).all()
        else:
            assert table["prediction"].fillna("").str.fullmatch("[0-9]*").all()


def test_predict_refuses_what_it_cannot_read(ctc_run, tmp_path, capsys):
    result, _, uri, _ = ctc_run
    argv = ["--model-uri", f"runs:/{result.run_id}/model", "--tracking-uri", uri]
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.wav").write_text("not audio")
    for source, message in (
        (tmp_path / "nowhere", "no such file or folder"),
        (tmp_path / "empty", "no .wav files"),
        (tmp_path / "bad.wav", "bad.wav is not a readable WAV file"),
    ):
        assert main(SpeechTask(), [*argv, "--predict", str(source)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_isolated_speaker_split_holds_out_one_speaker(isolated_run):
    result, _, uri = isolated_run
    (logged,) = runs_of(uri, "speech-isolated")
    assert logged.info.status == "FINISHED" and logged.data.tags["split"] == "speaker"
    assert 0.0 <= logged.data.metrics["test_accuracy"] <= 1.0
    assert result.report.artifacts["data"]["normalization"] == "speaker"
    speakers = result.report.artifacts["data"]["speakers"]
    assert speakers["test"] == ["speaker_3"]
    assert "speaker_3" not in speakers["train"] + speakers["validation"]
    names = _artifacts(uri, logged.info.run_id)
    assert {"utterance.png", "confusion.png"} <= names
    mlflow.set_tracking_uri(uri)
    reloaded = mlflow.keras.load_model(f"runs:/{logged.info.run_id}/model")
    voice = audio_batch([tone(d, seconds=0.3 + 0.05 * d, seed=d).astype("f4") for d in range(4)])
    np.testing.assert_allclose(
        reloaded.predict(voice, verbose=0), result.model.predict(voice, verbose=0), atol=1e-6
    )
    # Speaker CMVN inside the model: the batch is one voice, normalised as training does.
    frames = features.waveform_features(list(voice["waveform"][i, :n] for i, n in
                                             enumerate(voice["length"])))  # fmt: skip
    corpus = Corpus("v", frames, list("0123"), np.array(["v"] * 4), list(DIGITS))
    expected = frames_model(reloaded).predict(
        keras.utils.pad_sequences(speaker_normalized(corpus).frames, dtype="float32",
                                  padding="post"), verbose=0)  # fmt: skip
    np.testing.assert_allclose(reloaded.predict(voice, verbose=0), expected, atol=1e-5)


def test_adaptation_logs_the_speaker_independent_score_beside_the_adapted_one(isolated_run):
    result, _, uri = isolated_run
    (logged,) = runs_of(uri, "speech-isolated")
    metrics = logged.data.metrics
    predictions = result.report.tables["predictions"]
    assert metrics["test_pseudo_labels"] == len(predictions) == 500  # confidence 0: all of them
    unadapted = (predictions["unadapted"] == predictions["reference"]).mean()
    adapted = (predictions["predicted"] == predictions["reference"]).mean()
    assert metrics["test_unadapted_accuracy"] == pytest.approx(unadapted)
    assert metrics["test_accuracy"] == pytest.approx(adapted)
    # One round: the pseudo-labels are the speaker-independent model's own predictions.
    assert abs(metrics["test_pseudo_label_accuracy"] - unadapted) <= 2 / len(predictions)
    # The runner fitted the adaptation as a stage: one curve per copy, and its time.
    for copy in ("copy1", "copy2"):
        assert f"adapt/{copy}-round1/loss" in metrics
    assert "adapt/train_seconds" in metrics


def _drive(plan) -> tuple[list, object]:
    """Run a stage plan as the runner does (here nothing is trained): what it yielded, and
    what it returned."""
    yielded = []
    try:
        while True:
            yielded.append(next(plan))
    except StopIteration as done:
        return yielded, done.value


def test_cross_fitting_scores_each_half_with_a_copy_adapted_on_the_other():
    voice = Utterances(
        [np.full((3, 2), i, np.float32) for i in range(10)], list("0123401234"), np.zeros(10)
    )
    train = Utterances([np.full((3, 2), -1, np.float32)], ["0"], np.zeros(1))
    seen, given, copies = {}, [], []

    def copy_model():
        copies.append(len(copies))
        return copies[-1]

    def ids(examples):
        return {int(f[0, 0]) for f in examples.frames}

    def fine_tune(copy, examples, name):
        seen.setdefault(copy, []).append((ids(examples), list(examples.labels), name))
        return name

    def predict(copy, examples):
        given.append(ids(examples))
        # Recordings 0-4 confidently "1", the rest unsure: only those become pseudo-labels.
        sure, unsure = [0.0, 0.95, 0.05, 0, 0], [0.5, 0.5, 0, 0, 0]
        rows = np.array([sure if f[0, 0] < 5 else unsure for f in examples.frames], np.float32)
        rows[:, 4] = copy / 100  # marks which copy scored a recording
        return rows

    plan = adaptation.cross_fitted(
        copy_model, voice, train, list("01234"), 2, 0.9, fine_tune, predict,
        np.random.default_rng(0),
    )  # fmt: skip
    fits, adapted = _drive(plan)
    assert fits == ["copy1-round1", "copy1-round2", "copy2-round1", "copy2-round2"]
    assert copies == [0, 1] and all(len(seen[c]) == 2 for c in copies)  # two rounds per copy
    assert all(recordings == set(range(10)) for recordings in given)  # balancing sees them all
    scored_by = [
        set(np.flatnonzero(np.isclose(adapted.probabilities[:, 4], c / 100))) for c in copies
    ]
    assert scored_by[0] | scored_by[1] == set(range(10)) and len(scored_by[0]) == 5
    for copy in copies:
        for fine_tuned, labels, _ in seen[copy]:
            assert -1 in fine_tuned and not fine_tuned & scored_by[copy]  # never what it scores
            assert labels[1:] == ["1"] * (len(labels) - 1)  # the confident prediction
    assert adapted.pseudo_labels == 5  # recordings 0-4, across the two halves
    assert adapted.pseudo_label_accuracy == pytest.approx(1 / 5)  # "1" is right for recording 1
    assert adapted.probabilities.shape == (10, 5)


def test_no_round_scores_with_unadapted_copies_and_reports_no_pseudo_labels():
    voice = Utterances([np.zeros((2, 1), np.float32)] * 4, list("0101"), np.zeros(4))
    fits, adapted = _drive(adaptation.cross_fitted(
        lambda: None, voice, voice, list("01"), 0, 0.5, None,
        lambda _, examples: np.tile([0.9, 0.1], (len(examples), 1)), np.random.default_rng(0),
    ))  # fmt: skip
    assert fits == []
    assert adapted.pseudo_labels == 0 and adapted.pseudo_label_accuracy is None
    np.testing.assert_allclose(adapted.probabilities, np.tile([0.9, 0.1], (4, 1)))


def test_balanced_posteriors_give_every_class_an_equal_share():
    probabilities = np.random.default_rng(0).dirichlet([0.3] * 4, size=40)
    balanced = adaptation.balanced(probabilities)
    np.testing.assert_allclose(balanced.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(balanced.sum(axis=0), 10.0, rtol=1e-3)
    # Whole classes are rescaled: every recording's odds of one class against another change
    # by the same factor.
    odds_change = np.log(balanced / balanced[:, :1]) - np.log(probabilities / probabilities[:, :1])
    np.testing.assert_allclose(odds_change, odds_change[:1].repeat(40, axis=0), atol=1e-3)


def test_balancing_undoes_a_confident_systematic_confusion():
    # Every "a" is heard as "b", but "a"s look less unlike "a" than the true "b"s do.
    heard_as_b = [[0.3, 0.7]] * 10 + [[0.001, 0.999]] * 10
    truth = [0] * 10 + [1] * 10
    assert (np.argmax(heard_as_b, axis=1) == 1).all()
    assert (adaptation.balanced(np.array(heard_as_b)).argmax(axis=1) == truth).all()


def test_already_balanced_posteriors_are_unchanged():
    probabilities = np.array([[0.8, 0.2], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]])
    np.testing.assert_allclose(adaptation.balanced(probabilities), probabilities, atol=1e-6)


def test_balanced_run_decides_by_the_rebalanced_posteriors(shared_store):
    cfg = SpeechConfig(
        mode="isolated", split="speaker", held_out_speaker="speaker_2", balance_words="on",
        **TINY,
    )  # fmt: skip
    opts = RunOptions(tracking_uri=shared_store, experiment="speech-balanced")
    result = run(SpeechTask(), cfg, opts)
    (logged,) = runs_of(shared_store, "speech-balanced")
    predictions = result.report.tables["predictions"]
    info = SpeechTask().data(cfg).info  # the same split again: it is seeded
    posteriors = class_probabilities(
        frames_model(result.model), info["examples"]["test"], cfg.batch_size
    )
    classes = info["classes"]
    expected = [classes[i] for i in adaptation.balanced(posteriors).argmax(axis=1)]
    assert predictions["predicted"].tolist() == expected
    assert predictions["unadapted"].tolist() == [classes[i] for i in posteriors.argmax(axis=1)]
    metrics = logged.data.metrics
    assert metrics["test_accuracy"] == pytest.approx(
        (predictions["predicted"] == predictions["reference"]).mean()
    )
    assert metrics["test_unadapted_accuracy"] == pytest.approx(
        (predictions["unadapted"] == predictions["reference"]).mean()
    )
    assert "test_pseudo_labels" not in metrics  # balancing alone trains nothing


def test_fsdd_has_six_balanced_derived_speakers():
    corpus = load_corpus("fsdd")
    assert len(corpus) == 3000 and corpus.frames[0].shape[1] == 13
    for speaker in np.unique(corpus.speakers):
        digits = np.array(corpus.labels)[corpus.speakers == speaker]
        assert sorted(np.unique(digits, return_counts=True)[1]) == [50] * 10


def test_japanese_vowels_parses_its_own_ts_files():
    corpus = load_corpus("japanese_vowels")
    assert len(corpus) == 640 and int(corpus.own_test.sum()) == 370
    assert corpus.classes == [str(i) for i in range(1, 10)]
    assert {f.shape[1] for f in corpus.frames} == {12}
    assert min(map(len, corpus.frames)) >= 7 and max(map(len, corpus.frames)) <= 29


def test_mfcc_front_end_shape_and_batch_padding():
    samples = tone(4, seconds=0.5).astype(np.float32)
    mfcc = features.mfcc(samples).numpy()
    assert mfcc.shape == (1 + len(samples) // features.FRAME_STEP, features.N_MFCC)
    padded = np.zeros((2, len(samples) + 900), np.float32)
    padded[0, : len(samples)], padded[1] = samples, tone(2, seconds=0.6125)
    batch = features.mfcc_batch(padded, [len(samples), padded.shape[1]]).numpy()
    np.testing.assert_allclose(batch[0, : len(mfcc)], mfcc, atol=1e-3)  # padding changes nothing
    assert not batch[0, len(mfcc) :].any()  # frames past the recording are zero (masked)


def two_tones(rate: int, seconds: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * 450 * t) * np.hanning(len(t)) + 0.2 * np.sin(
        2 * np.pi * 1700 * t
    )


@pytest.mark.parametrize("rate", [16000, 11025, 44100])
def test_other_rates_are_resampled_and_lower_ones_refused(tmp_path, rate):
    at_8k = features.read_wav(write_wav(tmp_path / "low.wav", two_tones(8000)))
    other = features.read_wav(write_wav(tmp_path / "high.wav", two_tones(rate), rate=rate))
    assert abs(len(other) - len(at_8k)) <= 1
    low, high = features.waveform_features([at_8k, other[: len(at_8k)]])
    assert np.abs(low[1:-1] - high[1:-1]).max() < 0.5  # the same sound, the same frames
    write_wav(tmp_path / "odd.wav", tone(2, rate=6000), rate=6000)
    with pytest.raises(DataError, match="6000 Hz, below the model's 8000 Hz"):
        features.read_wav(tmp_path / "odd.wav")


def test_wav_folder_reads_transcripts_speakers_and_features(tmp_path):
    corpus = read_folder(wav_folder(tmp_path))
    assert len(corpus) == 12 and corpus.single_digits
    assert sorted(set(corpus.speakers)) == ["ann", "bob"]
    assert all(f.shape[1] == 13 for f in corpus.frames)


def test_a_model_trains_on_a_wav_folder(tmp_path, shared_store, capsys):
    folder = wav_folder(tmp_path / "wavs")
    code = main(
        SpeechTask(),
        [
            "--data",
            str(folder),
            "--epochs",
            "1",
            "--units",
            "4",
            "--layers",
            "1",
            "--utterances",
            "16",
            "--conv-filters",
            "4",
            "--tracking-uri",
            shared_store,
            "--experiment",
            "speech-wav",
            "--no-log-model",
        ],
    )
    assert code == 0, capsys.readouterr().err
    (logged,) = runs_of(shared_store, "speech-wav")
    assert logged.info.status == "FINISHED" and "test_wer" in logged.data.metrics


def test_every_speaker_held_out_in_turn_gives_child_runs_and_their_summary(
    tmp_path, shared_store, capsys
):
    folder, out = wav_folder(tmp_path / "wavs"), tmp_path / "out"
    code = main(
        SpeechTask(),
        [*EVERY_SPEAKER, "--epochs", "1", "--units", "4", "--no-log-model"]
        + ["--data", str(folder), "--output", str(out)]
        + ["--tracking-uri", shared_store, "--experiment", "speech-loso"],
    )
    assert code == 0, capsys.readouterr().err
    runs = runs_of(shared_store, "speech-loso")
    (parent,) = [r for r in runs if "fold" not in r.data.tags]
    children = {r.data.tags["fold"]: r for r in runs if "fold" in r.data.tags}
    assert sorted(children) == ["ann", "bob"] and parent.info.status == "FINISHED"
    for speaker, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["held_out_speaker"] == speaker
    assert parent.data.params["held_out_speaker"] == "all"
    accuracies = [c.data.metrics["test_accuracy"] for c in children.values()]
    summary = parent.data.metrics
    assert summary["test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert summary["test_accuracy_min"] == min(accuracies)
    assert summary["test_accuracy_max"] == max(accuracies)
    assert summary["test_errors"] == pytest.approx(np.mean([6 - 6 * a for a in accuracies]))
    assert {"results/folds.csv", "folds.png"} <= _artifacts(shared_store, parent.info.run_id)
    table = pd.read_csv(out / "folds.csv")
    assert table["fold"].tolist() == ["ann", "bob"]
    assert table["test_accuracy"].tolist() == pytest.approx(
        [children[s].data.metrics["test_accuracy"] for s in ("ann", "bob")]
    )
    assert not (out / ".pipelines").exists()


def _tagged_corpus() -> Corpus:
    """Frames carry (digit, speaker, position in the recording) so joins can be checked; each
    recording ends in a quiet frame (column 0 is the energy), which gaps are made of."""
    frames, labels, speakers = [], [], []
    for i in range(40):
        digit, speaker, n = i % 10, i % 4, 3 + i % 5
        block = np.stack([np.full(n, 10.0 + digit), np.full(n, speaker), np.arange(n)], axis=1)
        frames.append(np.concatenate([block, [[0.0, speaker, -1]]]).astype(np.float32))
        labels.append(str(digit))
        speakers.append(f"s{speaker}")
    return Corpus("tagged", frames, labels, np.array(speakers), list("0123456789"))


def test_connected_utterances_join_digits_of_one_speaker():
    corpus = _tagged_corpus()
    built = connected_utterances(corpus, 50, np.random.default_rng(0), noise=0.0)
    for frames, label, speaker in zip(built.frames, built.labels, built.speakers):
        assert 1 <= len(label) <= 7
        assert set(frames[:, 1]) == {float(speaker[1:])}  # every frame, gaps too
        starts = frames[frames[:, 2] == 0]
        assert "".join(str(int(d - 10)) for d in starts[:, 0]) == label


def test_speaker_split_has_no_speaker_overlap():
    corpus = _tagged_corpus()
    parts = split_speaker(corpus.speakers, "s2", 0.2, np.random.default_rng(0))
    test = set(corpus.speakers[parts["test"]])
    rest = set(corpus.speakers[np.concatenate([parts["train"], parts["validation"]])])
    assert test == {"s2"} and "s2" not in rest
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(corpus)))


def _voices() -> Corpus:
    """Two speakers whose frames differ by offset and scale (a voice and a channel)."""
    rng = np.random.default_rng(0)
    frames, speakers = [], []
    for i in range(12):
        speaker, n = i % 2, 4 + i % 5
        frames.append((rng.normal(size=(n, 13)) * (1 + 3 * speaker) + 10 * speaker).astype("f4"))
        speakers.append(f"s{speaker}")
    return Corpus("voices", frames, [str(i % 10) for i in range(12)], np.array(speakers), [])


def test_speaker_normalization_standardises_each_voice_by_its_own_statistics():
    corpus = _voices()
    normalized = speaker_normalized(corpus)
    assert normalized.labels == corpus.labels and normalized.speakers is corpus.speakers
    for speaker in ("s0", "s1"):
        index = np.flatnonzero(corpus.speakers == speaker)
        stacked = np.concatenate([normalized.frames[i] for i in index])
        np.testing.assert_allclose(stacked.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(stacked.std(axis=0), 1.0, atol=1e-4)
    alone = speaker_normalized(corpus.subset(np.flatnonzero(corpus.speakers == "s1")))
    np.testing.assert_allclose(alone.frames[0], normalized.frames[1], atol=1e-6)


def test_histogram_equalization_gives_each_speaker_normal_scores_of_its_ranks():
    rng = np.random.default_rng(3)
    frames = [rng.gamma(2.0, 1.0 + i % 2, size=(8 + i % 5, 13)).round(1) for i in range(20)]
    speakers = np.array([f"s{i % 2}" for i in range(20)])
    corpus = Corpus("skewed", frames, ["1"] * 20, speakers, list("0123456789"))
    equalized = speaker_normalized(corpus, "histogram")
    for speaker in ("s0", "s1"):
        index = np.flatnonzero(speakers == speaker)
        raw = np.concatenate([frames[i] for i in index])
        stacked = np.concatenate([equalized.frames[i] for i in index])
        ranks = scipy.stats.rankdata(raw, method="average", axis=0)  # ties share a rank
        expected = scipy.stats.norm.ppf(ranks / (len(raw) + 1))  # van der Waerden scores
        np.testing.assert_allclose(stacked, expected, atol=1e-5)
        assert abs(scipy.stats.skew(stacked[:, 0])) < 0.1 < abs(scipy.stats.skew(raw[:, 0]))


@pytest.mark.parametrize(
    ("mode", "switch", "speaker_classes", "resolved"),
    [
        ("isolated", "auto", False, "speaker"),
        ("ctc", "auto", False, "utterance"),
        ("isolated", "auto", True, "global"),
        ("ctc", "speaker", False, "speaker"),
        ("isolated", "utterance", False, "utterance"),
        ("isolated", "histogram", False, "histogram"),
    ],
)
def test_normalize_switch(mode, switch, speaker_classes, resolved):
    assert resolve_normalization(SpeechConfig(mode=mode, normalize=switch), speaker_classes) == (
        resolved
    )


def _log_mel_bump(centre_hz: float) -> np.ndarray:
    """A log-mel spectrum with one formant-like bump, as 128 bands."""
    hz = augment._band_centres_hz()
    spectrum = 20.0 * np.exp(-0.5 * ((hz - centre_hz) / 150.0) ** 2) - 50.0
    return np.where(hz > augment.SIGNAL_HZ, -80.0, spectrum).astype(np.float32)


def test_vtlp_with_alpha_one_is_the_identity():
    np.testing.assert_allclose(augment.vtlp_matrix(1.0).numpy(), np.eye(13), atol=1e-5)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_a_formant_by_alpha(alpha):
    hz = augment._band_centres_hz()
    mfcc = augment._DCT.numpy() @ _log_mel_bump(1000.0)
    warped = augment.vtlp_matrix(alpha).numpy() @ mfcc
    smooth = augment._DCT.numpy().T @ warped  # the 13-coefficient envelope, back in bands
    peak = hz[np.argmax(np.where(hz < 3500, smooth, -np.inf))]
    assert peak == pytest.approx(alpha * 1000.0, rel=0.03)
    edge = augment.warp_frequencies(np.float32(augment.SIGNAL_HZ), alpha)
    assert float(edge) == pytest.approx(augment.SIGNAL_HZ)


@pytest.mark.parametrize("logits", [False, True])
def test_warp_averaged_model_averages_the_posteriors_of_the_warped_frames(logits):
    rng = np.random.default_rng(0)
    frames_in = keras.Input((None, 13))
    dense = keras.layers.Dense(4, activation=None if logits else "softmax")(frames_in)
    acoustic = keras.Model(frames_in, dense)
    frames = rng.normal(size=(2, 5, 13)).astype("f4")
    frames[1, 3:] = 0.0  # padding
    averaged = augment.warp_averaged(acoustic, (0.9, 1.0, 1.2), logits)
    heads = [acoustic(frames @ augment.vtlp_matrix(a).numpy().T).numpy() for a in (0.9, 1.0, 1.2)]
    if logits:
        heads = [h - scipy.special.logsumexp(h, axis=-1, keepdims=True) for h in heads]
    np.testing.assert_allclose(averaged(frames).numpy(), np.mean(heads, axis=0), atol=1e-5)
    assert augment.warp_averaged(acoustic, (1.0,), logits) is acoustic


def test_random_channel_cuts_the_band_edges_or_lifts_the_quiet_bands():
    hz = augment._band_centres_hz()
    envelope = 40.0 * np.exp(-0.5 * ((hz - 1000.0) / 300.0) ** 2) - 70.0  # quiet but one formant
    frames = np.tile(augment._DCT.numpy() @ envelope.astype(np.float32), (4, 1))
    low = hz < 120  # below every band limit's lower edge
    changes = []
    for seed in range(40):
        heard = augment.random_channel(frames, np.array([seed, 3])).numpy()
        assert heard.shape == frames.shape and np.allclose(heard, heard[:1])  # one channel
        change = augment._DCT.numpy().T @ (heard[0] - frames[0])
        changes.append(change[low].mean())
    assert min(changes) < -10 and max(changes) > 10  # a telephone band; a noise floor
    assert sum(abs(c) < 1e-3 for c in changes) >= 3  # and utterances left as they were
    same = augment.random_channel(frames, np.array([5, 3])).numpy()
    np.testing.assert_array_equal(same, augment.random_channel(frames, np.array([5, 3])))


def test_speed_perturbation_resamples_time_linearly():
    ramp = np.repeat(np.arange(20, dtype=np.float32)[:, None], 13, axis=1)
    slower = augment.change_speed(ramp, 0.8).numpy()
    assert slower.shape == (25, 13)
    np.testing.assert_allclose(slower[:, 0], np.linspace(0, 19, 25), atol=1e-5)
    np.testing.assert_allclose(augment.change_speed(ramp, 1.0).numpy(), ramp)
    assert augment.change_speed(ramp[:1], 1.1).shape == (1, 13)


@pytest.mark.parametrize("axis", [0, 1])
def test_masks_set_at_most_count_times_width_runs_to_the_mean(axis):
    frames = np.random.default_rng(0).normal(size=(30, 13)).astype(np.float32)
    mean = np.broadcast_to(frames.mean(axis=0), frames.shape)
    along = (lambda a: a) if axis == 0 else np.transpose  # masked runs become rows
    masked_runs = 0
    for seed in range(20):
        masked = along(augment.mask_runs(frames, axis, 2, 3, np.array([seed, 7])).numpy())
        changed = (masked != along(frames)).any(axis=1)
        assert changed.sum() <= 6
        np.testing.assert_allclose(masked[changed], along(mean)[changed], atol=1e-6)
        np.testing.assert_array_equal(masked[~changed], along(frames)[~changed])
        masked_runs += changed.any()
    assert masked_runs > 10


def test_augmentation_is_deterministic_given_a_seed_and_keeps_the_shape():
    frames = np.random.default_rng(0).normal(size=(18, 13)).astype(np.float32)
    settings = augment.Augmentation(speed=0.0)
    first = augment.augment(frames, np.array([1, 2]), settings).numpy()
    np.testing.assert_array_equal(first, augment.augment(frames, np.array([1, 2]), settings))
    assert first.shape == frames.shape
    assert not np.allclose(first, augment.augment(frames, np.array([1, 3]), settings))
    np.testing.assert_array_equal(
        augment.augment(frames, np.array([1, 2]), augment.NO_AUGMENTATION), frames
    )


def _epochs(dataset, count: int = 2) -> list[list[np.ndarray]]:
    return [[np.asarray(x) for x, _ in dataset.unbatch()] for _ in range(count)]


def test_augmentation_changes_only_training_data_anew_each_epoch_and_repeatably(tmp_path):
    cfg = SpeechConfig(data=str(wav_folder(tmp_path)), mode="isolated", batch_size=4, augment="on")
    splits = SpeechTask().data(cfg)
    examples = splits.info["examples"]
    for name, dataset in (("validation", splits.validation), ("test", splits.test)):
        recorded = examples[name].frames
        seen = _epochs(dataset, 1)[0]
        for x, original in zip(seen, recorded):
            np.testing.assert_array_equal(x[: len(original)], original)
    recorded = {len(f): f for f in examples["train"].frames}
    first, second = _epochs(splits.train)
    assert len(first) == len(examples["train"])
    assert not any(np.array_equal(x, recorded.get(len(x))) for x in first)
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    again, _ = _epochs(SpeechTask().data(cfg).train)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("mode", "switch", "speaker_classes", "active"),
    [
        ("ctc", "on", False, True),
        ("isolated", "on", False, True),
        ("ctc", "off", False, False),
        ("isolated", "on", True, False),
    ],
)
def test_augment_switch(mode, switch, speaker_classes, active):
    cfg = SpeechConfig(mode=mode, augment=switch)
    assert augmentation(cfg, {"speaker_classes": speaker_classes}).active is active


def test_no_augment_trains_on_the_recorded_frames():
    frames = [np.full((n, 13), n, np.float32) for n in (5, 7, 9)]
    examples = Utterances(frames, ["1", "2", "3"], np.array(["a", "a", "b"]))
    cfg = SpeechConfig(mode="isolated", batch_size=3)
    (seen,) = _epochs(batched(examples, cfg, list("0123456789"), augment.NO_AUGMENTATION), 1)
    assert sorted(float(x.max()) for x in seen) == [5.0, 7.0, 9.0]
    assert sorted(int((x != 0).any(axis=1).sum()) for x in seen) == [5, 7, 9]


def test_ctc_decoding_of_a_constructed_posterior():
    # frames: 1 1 blank 1 2 2 blank -> "112"; label k+1 is digit k, index 0 the blank
    path = [2, 2, 0, 2, 3, 3, 0, 0]
    logits = np.full((len(path), 11), -5.0, np.float32)
    logits[np.arange(len(path)), path] = 5.0
    assert ctc_transcripts([logits], [len(path)], "greedy") == ["112"]
    assert ctc_transcripts([logits], [len(path)], "beam_search", 4) == ["112"]
    assert ctc_transcripts([logits], [3], "greedy") == ["1"]  # length cuts the rest


def test_transcript_errors_and_aligned_confusion():
    errors = transcript_errors(["123", "45"], ["123", "4"])
    assert errors["wer"] == pytest.approx(1 / 5) and errors["utterance_accuracy"] == 0.5
    confusion = aligned_confusion(["123", "45"], ["173", ""])
    assert confusion[2, 7] == 1 and confusion[1, 1] == 1 and confusion[4, 10] == 1


BAD_INPUTS = {
    "missing folder": ("{root}/nowhere", None, "audio folder not found"),
    "empty folder": ("{root}/empty", None, "no .wav files"),
    "missing file": ("{root}/wavs", ["ann/0_0.wav 0", "ann/9_9.wav 9"], "missing file(s): ann/9"),
    "outside vocabulary": (
        "{root}/wavs",
        ["ann/0_0.wav 0", "ann/1_0.wav one x"],
        "outside the vocabulary 0-9: 'x'",
    ),
    "zero-length audio": ("{root}/wavs", "zero", "zero length"),
    "shorter than one frame": ("{root}/wavs", "short", "1.25 ms, shorter than one 50 ms"),
    "low sample rate": ("{root}/wavs", "6000", "sampled at 6000 Hz"),
    "no digit transcripts": ("japanese_vowels", None, "use --mode isolated"),
    "tfds not prepared": ("tfds:speech_commands", None, "speech_commands is not prepared"),
    "unknown name": ("timit", None, "unknown data set 'timit'"),
}


def _prepare_bad(case: str, root: Path) -> str:
    spec, lines, _ = BAD_INPUTS[case]
    (root / "empty").mkdir()
    if spec.endswith("wavs"):
        folder = wav_folder(root / "wavs", lines if isinstance(lines, list) else None)
        if lines == "zero":
            write_wav(folder / "ann/0_0.wav", np.zeros(0))
        elif lines == "short":
            write_wav(folder / "ann/0_0.wav", np.zeros(10))  # 1.25 ms at 8 kHz
        elif lines == "6000":
            write_wav(folder / "bob/2_1.wav", tone(2, rate=6000), rate=6000)
    return spec.format(root=root)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_a_failed_run(case, workdir, shared_store, capsys):
    data = _prepare_bad(case, workdir)
    experiment = f"speech-{case.replace(' ', '-')}"
    args = [
        "--data",
        data,
        "--epochs",
        "1",
        "--units",
        "4",
        "--utterances",
        "8",
        "--tracking-uri",
        shared_store,
        "--experiment",
        experiment,
        "--output",
        str(workdir / "out"),
    ]
    code = main(SpeechTask(), args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    message = BAD_INPUTS[case][2]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    (failed,) = runs_of(shared_store, experiment)
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]
    assert not (workdir / "out" / "predictions.csv").exists()
    assert not (workdir / "out" / "metrics.json").exists()


FLAG_ERRORS = {
    "vtlp of 1": (["--vtlp", "1"], "--vtlp must be in [0, 1), got 1.0"),
    "negative speed": (["--speed", "-0.1"], "--speed must be in [0, 1), got -0.1"),
    "channel share above 1": (["--channel", "1.5"], "--channel must be in [0, 1], got 1.5"),
    "negative time masks": (["--time-masks", "-1"], "--time-masks must not be negative, got -1"),
    "adaptation without a held-out speaker": (
        ["--adapt", "1"],
        "--adapt adapts to a held-out speaker: it needs --mode isolated --split speaker",
    ),
    "balancing without a held-out speaker": (
        ["--balance-words", "on"],
        "--balance-words adapts to a held-out speaker: it needs --mode isolated --split speaker",
    ),
    "adaptation confidence of 1": (
        ["--adapt-confidence", "1"],
        "--adapt-confidence must be in [0, 1), got 1.0",
    ),
    "negative adaptation rounds": (["--adapt", "-1"], "--adapt must not be negative, got -1"),
    "test warp of 2": (
        ["--test-warps", "1,2"],
        "--test-warps takes alphas in [0.5, 1.5], got '1,2'",
    ),
    "no adaptation epochs": (["--adapt-epochs", "0"], "--adapt-epochs must be positive, got 0"),
    "search over every speaker held out": (
        [*EVERY_SPEAKER, "--tune", "--max-trials", "1"],
        "--tune does not combine with folds: search on one fold's configuration",
    ),
    "resume of every speaker held out": (
        [*EVERY_SPEAKER, "--resume", "--output", "out"],
        "--resume does not combine with folds: rerun the folds from scratch",
    ),
    "histogram equalization of speaker classes": (
        ["--data", "japanese_vowels", "--mode", "isolated", "--normalize", "histogram"],
        "--normalize histogram would remove the voice, and the classes are speakers: "
        "use --normalize global",
    ),
    "speaker CMVN of speaker classes": (
        ["--data", "japanese_vowels", "--mode", "isolated", "--normalize", "speaker"],
        "--normalize speaker would remove the voice, and the classes are speakers: "
        "use --normalize global",
    ),
}


@pytest.mark.parametrize("case", sorted(FLAG_ERRORS))
def test_bad_flags_are_one_line_exit_2_and_a_failed_run(case, workdir, shared_store, capsys):
    flags, message = FLAG_ERRORS[case]
    experiment = f"speech-{case.replace(' ', '-')}"
    code = main(SpeechTask(), [*flags, "--tracking-uri", shared_store, "--experiment", experiment])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: {message}"]
    (failed,) = runs_of(shared_store, experiment)
    assert failed.info.status == "FAILED" and message in failed.data.tags["error"]


def test_speaker_split_of_japanese_vowels_is_refused(workdir, shared_store, capsys):
    code = main(
        SpeechTask(),
        [
            "--data",
            "japanese_vowels",
            "--mode",
            "isolated",
            "--split",
            "speaker",
            "--tracking-uri",
            shared_store,
            "--experiment",
            "speech-refused",
        ],
    )
    assert code == 2 and "ARE its speakers" in capsys.readouterr().err


def test_a_failing_fold_fails_its_parent_with_one_line(workdir, shared_store, capsys):
    flags = ["--data", "japanese_vowels", *EVERY_SPEAKER, "--output", str(workdir / "out")]
    experiment = "speech-failing-fold"
    code = main(SpeechTask(), [*flags, "--tracking-uri", shared_store, "--experiment", experiment])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ARE its speakers" in err[0]
    runs = runs_of(shared_store, experiment)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}
    (child,) = [r for r in runs if "fold" in r.data.tags]
    assert child.data.tags["fold"] == "1" and "ARE its speakers" in child.data.tags["error"]
    assert not (workdir / "out" / "folds.csv").exists()


def test_help_lists_task_flags_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(SpeechTask(), ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--mode",
        "--split",
        "--held-out-speaker",
        "--beam-width",
        "--conv-filters",
        "--cell",
        "--tune",
    ):
        assert flag in out
    assert "default: fsdd" in out


def write_extensible_24_bit(path: Path, samples: np.ndarray, rate: int = 8000) -> Path:
    """A WAVE_FORMAT_EXTENSIBLE file, as 24-bit recorders write them (Python's wave module
    before 3.12 cannot read one)."""
    pcm = np.round(np.clip(samples, -1, 1) * (2**23 - 1)).astype("<i4")
    data = pcm.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    pcm_guid = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, rate, 3 * rate, 3, 24, 22, 24, 4) + pcm_guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_float_and_extensible_wavs_read_like_16_bit_pcm(tmp_path):
    """Both were refused ('unknown format: 3', '... 65534'): float WAVs are what scipy writes
    for float arrays and DAWs export, WAVE_FORMAT_EXTENSIBLE what 24-bit recorders write."""
    from scipy.io import wavfile

    sound = two_tones(8000)
    reference = features.read_wav(write_wav(tmp_path / "pcm16.wav", sound))
    wavfile.write(tmp_path / "float.wav", 8000, sound.astype(np.float32))
    wavfile.write(tmp_path / "stereo.wav", 8000, np.stack([sound, sound], 1).astype(np.float32))
    for name in ("float.wav", "stereo.wav"):
        np.testing.assert_allclose(features.read_wav(tmp_path / name), reference, atol=1e-4)
    extensible = features.read_wav(write_extensible_24_bit(tmp_path / "ext.wav", sound))
    np.testing.assert_allclose(extensible, reference, atol=1e-4)
    wavfile.write(tmp_path / "nan.wav", 8000, np.full(900, np.nan, np.float32))
    (tmp_path / "cut.wav").write_bytes((tmp_path / "ext.wav").read_bytes()[:30])
    for name, message in (("nan.wav", "NaN or infinite"), ("cut.wav", "not a readable WAV")):
        with pytest.raises(DataError, match=message):
            features.read_wav(tmp_path / name)
