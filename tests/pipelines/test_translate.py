"""``python -m pipelines.translate``: catalog and Anki readers, BPE, the MLflow run, the
``--translate`` path (greedy and beam), and every bad input."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.core import DataError, RunOptions, main, run
from pipelines.core.tokenizer import tokenize
from pipelines.datasets.translation_builders import (
    catalog_pairs,
    clean_message,
    find_catalogs,
    load_gettext_pairs,
    read_anki,
    read_catalogs,
)
from pipelines.translate.inference import translate
from pipelines.translate.subwords import BytePairEncoding, join_pieces
from pipelines.translate.task import TranslateConfig, TranslateTask
from pipelines.translate.vocab import Vocabularies
from tests.conftest import runs_of


def cli(argv: list[str]) -> int:
    """The task's command line, in process."""
    return main(TranslateTask(), argv)


TINY = {"epochs": 2, "units": 8, "embedding_dim": 8, "merges": 60, "batch_size": 16,
        "learning_rate": 0.01}  # fmt: skip
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
HEADER = "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n > 1);\n"
VERBS = {"open": "ouvrir", "close": "fermer", "delete": "supprimer", "copy": "copier"}
COLOURS = {"red": "rouge", "blue": "bleu", "green": "vert", "black": "noir", "white": "blanc"}
THINGS = {"file": "fichier", "folder": "dossier", "disk": "disque", "window": "panneau"}


@pytest.fixture(scope="module", autouse=True)
def tfds_dir(tmp_path_factory):
    """Prepared catalogs go to a temporary TFDS directory, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("tfds")
        patch.setenv("TFDS_DATA_DIR", str(path))
        yield path


def write_mo(path: Path, messages: dict[str, str]) -> Path:
    """A compiled gettext catalog (GNU .mo, little-endian, no hash table) of ``messages``.

    A key ``"one\\x00many"`` with a value ``"un\\x00plusieurs"`` is a plural entry; a key
    ``"ctx\\x04text"`` has a message context.
    """
    entries = sorted(({"": HEADER} | messages).items())
    keys = [k.encode() for k, _ in entries]
    values = [v.encode() for _, v in entries]
    n = len(entries)
    start = 28 + 16 * n
    blob, key_table, value_table = b"", [], []
    for strings, table in ((keys, key_table), (values, value_table)):
        for s in strings:
            table.append((len(s), start + len(blob)))
            blob += s + b"\0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
        + b"".join(struct.pack("<2I", *e) for e in key_table + value_table)
        + blob
    )
    return path


def template_messages() -> dict[str, str]:
    """80 messages like "Open the red file" -> "Ouvrir le fichier rouge"."""
    return {
        f"{v.capitalize()} the {c} {t}": f"{fv.capitalize()} le {ft} {fc}"
        for (v, fv), (c, fc), (t, ft) in itertools.product(
            VERBS.items(), COLOURS.items(), THINGS.items()
        )
    }


@pytest.fixture(scope="module")
def locale_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("locale")
    messages = template_messages()
    half = dict(list(messages.items())[:40])
    write_mo(root / "fr" / "LC_MESSAGES" / "alpha.mo", half)
    write_mo(root / "fr" / "LC_MESSAGES" / "beta.mo", messages)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, locale_dir):
    """One tiny run on the written catalogs, shared by the tests that inspect it."""
    workdir = tmp_path_factory.mktemp("translate")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = TranslateConfig(locale_dir=str(locale_dir), **TINY)
    result = run(TranslateTask(), cfg, RunOptions(tracking_uri=uri, output=str(workdir / "out")))
    return result, uri, workdir / "out"


# ---- reading ------------------------------------------------------------------------------------
def test_clean_message_strips_accelerators_colons_and_rejects_placeholders():
    assert clean_message("_Open the file…") == "Open the file"
    assert clean_message("Save &As:") == "Save As"
    assert clean_message("Nom du fichier\u00a0:") == "Nom du fichier"
    assert clean_message("Wait...  ") == "Wait"
    for bad in ("cannot open %s", "bad value %-5.2f here", "hello {0} you", "got %(name)s",
                "argument $1 is wrong", "two\nlines here", "   "):  # fmt: skip
        assert clean_message(bad) is None, bad
    assert clean_message("100% done now") == "100% done now"


def test_catalog_reader(tmp_path):
    messages = {
        "Open the red file": "Ouvrir le fichier rouge",
        "menu\x04Close this window now": "Fermer cette fenêtre maintenant",
        "one file deleted\x00%d files deleted": "un fichier supprimé\x00%d fichiers supprimés",
        "Cannot open %s for reading": "Impossible d'ouvrir %s en lecture",
        "Two words": "Deux mots",
        "Same text stays here": "Same text stays here",
        "_Print the whole page…": "_Imprimer toute la page…",
    }
    first = write_mo(tmp_path / "fr" / "LC_MESSAGES" / "a.mo", messages)
    write_mo(tmp_path / "fr" / "LC_MESSAGES" / "b.mo", {"Open the red file": "Autre traduction"})
    assert list(catalog_pairs(first)) == [
        ("Close this window now", "Fermer cette fenêtre maintenant"),
        ("Open the red file", "Ouvrir le fichier rouge"),
        ("Print the whole page", "Imprimer toute la page"),
    ]
    pairs = read_catalogs(find_catalogs(tmp_path))
    assert len(pairs) == 3 and ("Open the red file", "Ouvrir le fichier rouge", "a") in pairs


def test_builder_records_its_catalogs(locale_dir):
    pairs, info = load_gettext_pairs(locale_dir)
    assert len(pairs) == 80 and pairs == sorted(pairs)
    assert info == {"catalogs": ["alpha.mo", "beta.mo"], "catalog_count": 2}
    assert load_gettext_pairs(locale_dir)[0] == pairs  # prepared once, read back the same


@pytest.mark.skipif(
    not Path("/usr/share/locale/fr/LC_MESSAGES/coreutils.mo").is_file(),
    reason="Debian's coreutils French catalog is not installed",
)
def test_a_real_system_catalog():
    pairs = list(catalog_pairs(Path("/usr/share/locale/fr/LC_MESSAGES/coreutils.mo")))
    assert len(pairs) > 100
    assert all(len(en.split()) >= 3 and "%" not in en and "\n" not in fr for en, fr in pairs)


def test_anki_reader(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(
        "\ufeffGo.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n\n"
        "Hi.\tSalut !\nGo.\tVa !\n",
        encoding="utf-8",
    )
    assert read_anki(path) == [("Go.", "Va !"), ("Hi.", "Salut !")]


# ---- tokens -------------------------------------------------------------------------------------
def test_bpe_round_trip():
    words = tokenize("lower lowest newer newest wider widest " * 3)
    bpe = BytePairEncoding.learn(words, merges=20)
    assert bpe.merges == BytePairEncoding.learn(words, merges=20).merges
    pieces = bpe.encode(["lowest", "slowest"])
    assert join_pieces(pieces) == ["lowest", "slowest"]
    assert len(pieces) < len("lowestslowest")


def test_vocabularies_encode_decode_and_travel_as_json():
    pairs = list(template_messages().items())
    vocab = Vocabularies.fit(pairs, "subword", merges=40)
    target = vocab.encode_target([pairs[0][1]])
    assert target[0, 0] == vocab.start_id and vocab.end_id in target[0]
    assert vocab.decode(target[0, 1:]) == "ouvrir le fichier rouge"
    again = Vocabularies.from_json(vocab.to_json())
    np.testing.assert_array_equal(
        again.encode_source(["Open it"]), vocab.encode_source(["Open it"])
    )
    assert vocab.unknown_words("open the 日本 file") == ["日本"]


# ---- the run ------------------------------------------------------------------------------------
def test_tiny_run_is_fully_tracked(trained):
    result, uri, output = trained
    (logged,) = runs_of(uri, "translate")
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["task"] == "translate" and logged.data.tags["data"] == "gettext_en_fr"
    for key in ("cell", "units", "attention", "embedding_dim", "dropout", "learning_rate",
                "weight_decay", "vocab", "max_words", "locale_dir"):  # fmt: skip
        assert key in logged.data.params
    assert "predict" not in logged.data.params and "model_uri" not in logged.data.params
    for key in ("test_bleu", "test_chrf", "baseline_copy_test_bleu", "baseline_copy_test_chrf",
                "baseline_retrieval_test_bleu", "baseline_retrieval_test_chrf"):  # fmt: skip
        assert 0.0 <= logged.data.metrics[key] <= 100.0
    client = mlflow.MlflowClient(uri)
    artifacts = {a.path for folder in (None, "results") for a in
                 client.list_artifacts(logged.info.run_id, folder)}  # fmt: skip
    assert {"attention.png", "results/vocabulary.json", "results/data.json",
            "results/translations.csv"} <= artifacts  # fmt: skip
    data = mlflow.artifacts.load_dict(f"runs:/{logged.info.run_id}/results/data.json")
    assert data["catalog_count"] == 2 and data["pairs"] == 80
    assert (output / "translations.csv").is_file() and (output / "metrics.json").is_file()


def test_logged_model_translates_like_the_trained_one(trained):
    result, uri, _ = trained
    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    vocab = result.report.artifacts["vocabulary"]
    vocab = Vocabularies.from_json(vocab)
    sentences = ["Open the red file", "Delete the blue window"]
    assert translate(model, vocab, sentences) == translate(result.model, vocab, sentences)
    batch = {"source": vocab.encode_source(sentences), "target": vocab.encode_target(sentences)}
    np.testing.assert_allclose(model.predict(batch, verbose=0),
                               result.model.predict(batch, verbose=0), atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("beam_width", [1, 3])
def test_cli_translates_with_greedy_and_beam_search(trained, capsys, beam_width):
    result, uri, _ = trained
    argv = ["--predict", "Open the red file", "--model-uri", f"runs:/{result.run_id}/model",
            "--tracking-uri", uri, "--beam-width", str(beam_width)]  # fmt: skip
    assert cli(argv) == 0
    vocab = Vocabularies.from_json(result.report.artifacts["vocabulary"])
    expected = translate(result.model, vocab, ["Open the red file"], beam_width)[0]
    assert capsys.readouterr().out == expected + "\n"


def test_cli_translates_every_line_of_a_file(trained, capsys, tmp_path):
    result, uri, _ = trained
    sentences = ["Open the red file", "Delete the blue window"]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n\n")
    argv = ["--predict", str(tmp_path / "in.txt"), "--model-uri", f"runs:/{result.run_id}/model",
            "--tracking-uri", uri, "--output", str(tmp_path / "out")]  # fmt: skip
    assert cli(argv) == 0
    vocab = Vocabularies.from_json(result.report.artifacts["vocabulary"])
    expected = translate(result.model, vocab, sentences)
    assert capsys.readouterr().out.splitlines() == expected
    table = pd.read_csv(tmp_path / "out" / "translations.csv", keep_default_na=False)
    assert table["source"].tolist() == sentences and table["translation"].tolist() == expected


def test_cli_translate_names_unknown_words_and_refuses_all_unknown(trained, capsys):
    result, uri, _ = trained
    common = ["--model-uri", f"runs:/{result.run_id}/model", "--tracking-uri", uri]
    assert cli(["--predict", "Open the 日本 file", *common]) == 0
    assert "日本" in capsys.readouterr().err
    assert cli(["--predict", "日本 語", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: none of the words")


def test_unsupported_flags_are_config_errors(workdir, capsys):
    assert cli(["--layers", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: the translator has one bidirectional")


def test_cli_translate_needs_a_logged_run(workdir, capsys):
    assert cli(["--predict", "Open the file"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --predict needs --model-uri (e.g. runs:/<run id>/model)"
    )
    assert cli(["--predict", "Open the file", "--model-uri", "runs:/0123abcd/model"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot load runs:/0123abcd/model")


# ---- bad input ----------------------------------------------------------------------------------
BAD_FILES = {
    "empty": (b"", "contains no text"),
    "no_tab": (b"Go.\tVa !\nHi. Salut !\n", "fra.txt:2: expected"),
    "not_utf8": (b"Go.\tVa !\nCaf\xe9\tCaf\xe9\n", "not UTF-8"),
}


@pytest.mark.parametrize("case", [*BAD_FILES, "no_catalogs"])
def test_bad_input_fails_cleanly(workdir, tracking_uri, capsys, case):
    if case == "no_catalogs":
        (workdir / "empty_locale").mkdir()
        argv, expected = ["--locale-dir", str(workdir / "empty_locale")], "no French gettext"
    else:
        content, expected = BAD_FILES[case]
        (workdir / "fra.txt").write_bytes(content)
        argv = ["--data", str(workdir / "fra.txt")]
    argv += [*TINY_FLAGS, "--tracking-uri", tracking_uri, "--output", str(workdir / "out")]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    (failed,) = runs_of(tracking_uri, "translate")
    assert failed.info.status == "FAILED" and expected in failed.data.tags["error"]
    assert not (workdir / "out" / "metrics.json").exists()


def test_too_few_pairs_and_unknown_names_are_data_errors(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text("Go now please.\tVa maintenant.\n", encoding="utf-8")
    with pytest.raises(DataError, match="only 1 sentence pairs"):
        TranslateTask().data(TranslateConfig(data=str(path)))
    with pytest.raises(DataError, match="unknown data set"):
        TranslateTask().data(TranslateConfig(data="tfds:wmt14"))


def test_help_lists_the_task_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--predict", "--model-uri", "--locale-dir", "--beam-width", "--vocab",
                 "--attention", "--cell"):  # fmt: skip
        assert flag in out
