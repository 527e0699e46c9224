"""Captioning pipeline: scene grammar, data loaders, metrics, decoding, MLflow e2e, bad input."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.captioning.task import (
    CaptioningConfig,
    CaptioningTask,
    bleu_scores,
    caption_metrics,
    generate,
    logged_vocabulary,
    object_metrics,
)
from pipelines.core import DataError, RunOptions, main, run
from pipelines.core.tokenizer import detokenize, tokenize
from pipelines.datasets import image_builders, scenes
from tests.conftest import logged_models, runs_of

TINY = {"train_scenes": 96, "validation_scenes": 32, "test_scenes": 32, "epochs": 2,
        "units": 16, "embedding_dim": 8, "filters": 4, "batch_size": 32}  # fmt: skip
TINY_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]


@pytest.fixture(scope="module", autouse=True)
def tfds_dir(tmp_path_factory):
    """Prepared scene sets go to a temporary TFDS directory, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("tfds")
        patch.setenv("TFDS_DATA_DIR", str(path))
        yield path


# ---- scenes ---------------------------------------------------------------------------------
def test_captions_follow_the_layout():
    images, labels = image_builders.read_mnist_5k()
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    made = scenes.make_scenes(images, labels, np.arange(5000), 200, image_builders.DIGIT_NAMES,
                              "digit", 64, seed=1)  # fmt: skip
    shapes = set()
    for scene in made:
        words = tokenize(scene.caption)
        assert [w for w in words if w.isdigit()] == [str(k) for k in scene.labels]
        assert [int(labels[s]) for s in scene.sources] == scene.labels
        assert scene.image.shape == (64, 64, 1) and scene.image.max() > 0
        for y, x, size in scene.boxes:
            assert min(y, x) >= 0 and max(y, x) + size <= 64
        count = len(scene.labels)
        if count <= 2:
            sizes = [w for w in words if w in ("small", "large")]
            assert [{"small": 16, "large": 28}[w] for w in sizes] == [b[2] for b in scene.boxes]
        if count == 2:
            (y0, x0, s0), (y1, x1, s1) = scene.boxes
            main, cross = ((x0, x1), (y0, y1)) if "left" in words else ((y0, y1), (x0, x1))
            assert main[0] + s0 <= 32 <= main[1]  # first in the first half, second in the other
            assert abs((cross[0] + s0 / 2) - (cross[1] + s1 / 2)) <= 6  # one line, not diagonal
        shapes.add(re.sub(r"\d", "N", re.sub(r"small|large", "S", scene.caption)))
    assert shapes == {"a S N", "a S N to the left of a S N", "a S N above a S N",
                      "three digits: N, N and N", "four digits: N, N, N and N"}  # fmt: skip


def test_describe_is_deterministic_given_the_layout():
    assert scenes.describe("row", ["7", "3"], ["small", "large"], "digit") == (
        "a small 7 to the left of a large 3"
    )
    assert scenes.describe("row", ["1", "4", "9"], ["", "", ""], "digit") == (
        "three digits: 1, 4 and 9"
    )
    assert scenes.describe("grid", ["bag", "coat", "boot", "dress"], [""] * 4, "item") == (
        "four items: bag, coat, boot and dress"
    )


def test_pools_are_disjoint_and_test_scenes_use_only_their_pool():
    pools = scenes.disjoint_pools(5000, image_builders.POOL_FRACTIONS, seed=0)
    assert [len(p) for p in pools] == [4000, 500, 500]
    assert len(np.unique(np.concatenate(pools))) == 5000
    config = image_builders.SceneConfig.of(60, 20, 20, 64)
    sets = image_builders.load_scenes("mnist_scenes", config)
    used = {split: set(np.concatenate(part.sources).tolist()) for split, part in sets.items()}
    assert not used["train"] & used["test"] and not used["train"] & used["validation"]
    assert used["test"] <= set(pools[2].tolist()) and used["train"] <= set(pools[0].tolist())
    assert len(sets["test"]) == 20 and sets["train"].images.shape == (60, 64, 64, 1)


# ---- text and metrics -----------------------------------------------------------------------
def test_logged_vocabulary_of_new_and_earlier_runs():
    vocab = logged_vocabulary({"tokens": ["", "[UNK]", "[start]", "[end]", "a", "7"]})
    assert (vocab.start_id, vocab.end_id, vocab.unk_id) == (2, 3, 1)
    earlier = logged_vocabulary({"words": ["a", "7"], "max_tokens": 4})  # pad, start, end, unk
    assert (earlier.start_id, earlier.end_id, earlier.unk_id) == (1, 2, 3)
    assert earlier.decode([1, 4, 5, 2, 4]) == ["a", "7"]


def test_bleu_on_hand_cases():
    perfect = bleu_scores([tokenize("a large 2 above a small 5")], [["a large 2 above a small 5"]])
    assert perfect == pytest.approx({f"bleu_{n}": 1.0 for n in range(1, 5)})
    # Unsmoothed, as in the COCO evaluation: a corpus of 3-word captions has no 4-grams.
    assert bleu_scores([["a", "small", "7"]], [["a small 7"]])["bleu_4"] == 0.0
    # p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1; same length so no brevity penalty.
    scores = bleu_scores([["a", "b", "c", "d"]], [["a b c e"]])
    assert scores["bleu_1"] == pytest.approx(0.75)
    assert scores["bleu_2"] == pytest.approx((0.75 * 2 / 3) ** 0.5)
    assert scores["bleu_3"] == pytest.approx((0.75 * 2 / 3 * 0.5) ** (1 / 3))
    assert scores["bleu_4"] == 0.0
    # A second reference (only for the first image) is used where it exists.
    multi = caption_metrics([["a", "b"], ["x", "y"]], [["a c", "a b"], ["x y"]])
    assert multi["bleu_2"] == pytest.approx(1.0) and multi["exact_match"] == 1.0


def test_object_metrics_count_mentions_as_multisets():
    metrics = object_metrics(
        [tokenize("three digits: 1, 1 and 9"), tokenize("a small 7")],
        [["1", "4", "9"], ["7"]],
        set("0123456789"),
    )
    assert metrics == pytest.approx(
        {"object_precision": 3 / 4, "object_recall": 3 / 4, "object_exact": 0.5}
    )


# ---- data readers ---------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> Path:
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_idx_reader_and_fashion_mnist_folder(tmp_path, monkeypatch):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    np.testing.assert_array_equal(image_builders.read_idx(write_idx(tmp_path / "a.idx", images)),
                                  images)  # fmt: skip
    floats = np.array([[1.5, -2.0]], np.float32)
    np.testing.assert_array_equal(
        image_builders.read_idx(write_idx(tmp_path / "f.idx.gz", floats, 0x0D)), floats
    )
    (tmp_path / "short.idx").write_bytes((tmp_path / "a.idx").read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        image_builders.read_idx(tmp_path / "short.idx")
    (tmp_path / "text.idx").write_text("hello")
    with pytest.raises(DataError, match="not an IDX file"):
        image_builders.read_idx(tmp_path / "text.idx")
    monkeypatch.setattr(image_builders, "FASHION_MNIST_DIRS", (str(tmp_path / "none"),))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        image_builders.fashion_mnist_dir()
    for part, n in (("train", 3), ("t10k", 2)):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", images[:n])
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8))
    got, labels = image_builders.read_fashion_mnist(tmp_path)
    assert got.shape == (5, 28, 28) and labels.tolist() == [0, 1, 2, 0, 1]


def test_fashion_scenes_build_from_the_debian_idx_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("t10k", 20)):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz",
                  rng.integers(1, 255, (n, 28, 28), dtype=np.uint8))  # fmt: skip
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    monkeypatch.setattr(image_builders, "FASHION_MNIST_DIRS", (str(tmp_path),))
    config = image_builders.SceneConfig.of(12, 4, 4, 48)
    sets = image_builders.load_scenes("fashion_mnist_scenes", config)
    assert sets["train"].images.shape == (12, 48, 48, 1)
    for refs, objects in zip(sets["test"].references, sets["test"].objects):
        assert set(objects) <= set(image_builders.FASHION_NAMES)
        assert [w for w in tokenize(refs[0]) if w in image_builders.FASHION_NAMES] == objects


def caption_folder(root: Path, n: int = 8) -> Path:
    """A Flickr8k-style folder: Images/ with PNGs of varied sizes and a captions.txt."""
    (root / "Images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["image,caption"]
    for i in range(n):
        size = (40 + 13 * i, 30 + 7 * i)
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "Images" / f"img{i}.png")
        colour = "red" if i % 2 else "blue"
        lines += [f"img{i}.png,A {colour} square, seen from above .", f"img{i}.png,a {colour} box"]
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    return root


def test_caption_folder_resizes_images_of_varied_sizes(tmp_path):
    folder = image_builders.read_caption_folder(caption_folder(tmp_path / "f"), image_size=48)
    assert folder.images.shape == (8, 48, 48, 3) and folder.images.dtype == np.uint8
    assert folder.references[1] == ["A red square, seen from above .", "a red box"]


# ---- model, decoding and the tracked run ----------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny default (mnist_scenes) run shared by the tests that inspect it."""
    workdir = tmp_path_factory.mktemp("captioning")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = CaptioningConfig(**TINY)
    task = CaptioningTask()
    result = run(task, cfg, RunOptions(tracking_uri=uri, output=str(workdir / "out")))
    return result, cfg, uri, workdir / "out"


def test_default_run_is_fully_tracked(trained):
    result, _, uri, out = trained
    (logged,) = runs_of(uri, "captioning")
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["task"] == "captioning" and logged.data.tags["data"] == "mnist_scenes"
    for key in ("cell", "units", "attention", "embedding_dim", "learning_rate", "dropout",
                "weight_decay", "beam_width", "train_scenes", "encoder"):  # fmt: skip
        assert key in logged.data.params
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "exact_match", "object_precision",
                "object_recall", "object_exact"):  # fmt: skip
        assert 0.0 <= logged.data.metrics[f"test_{key}"] <= 1.0
    artifacts = mlflow.artifacts.download_artifacts(run_id=logged.info.run_id, tracking_uri=uri)
    names = {str(p.relative_to(artifacts)) for p in Path(artifacts).rglob("*") if p.is_file()}
    for name in ("samples.png", "attention.png", "results/captions.csv",
                 "results/vocabulary.json", "config.json"):  # fmt: skip
        assert name in names
    assert set(logged_models(uri, logged)) == {"model"}
    assert (out / "captions.csv").is_file() and (out / "metrics.json").is_file()


def test_logged_model_reloads_and_predicts_the_same(trained):
    result, _, uri, _ = trained
    (logged,) = runs_of(uri, "captioning")
    mlflow.set_tracking_uri(uri)
    reloaded = mlflow.keras.load_model(f"runs:/{logged.info.run_id}/model")
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(0, 255, (3, 64, 64, 1)).astype("float32"),
             "tokens": rng.integers(1, 10, (3, 7)).astype("int32")}  # fmt: skip
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0),
                               result.model.predict(batch, verbose=0), atol=1e-5)  # fmt: skip


def test_predict_captions_image_files(trained, tmp_path, capsys):
    """--predict on files that are not from the data set: a grey PNG of the model's size and an
    RGB JPEG of another size (both made here), in a folder beside a file that is no image."""
    result, _, uri, _ = trained
    run_id = runs_of(uri, "captioning")[0].info.run_id
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = np.zeros((64, 64), np.uint8)
    pixels[20:44, 24:40] = 255  # a bright bar on black, like a digit stroke
    Image.fromarray(pixels).save(folder / "bar.png")
    rgb = np.random.default_rng(0).integers(0, 255, (80, 80, 3), np.uint8)
    Image.fromarray(rgb).save(folder / "noise.JPG")
    (folder / "notes.txt").write_text("not an image")

    files, images = image_builders.read_images(folder, 64, 1)
    assert [f.name for f in files] == ["bar.png", "noise.JPG"] and images.shape == (2, 64, 64, 1)
    np.testing.assert_array_equal(images[0, ..., 0], pixels)
    with Image.open(folder / "noise.JPG") as decoded:  # as stored: JPEG is lossy
        grey = np.asarray(decoded.convert("L").resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(images[1, ..., 0], grey)

    out = tmp_path / "out"
    args = ["--model-uri", f"runs:/{run_id}/model", "--tracking-uri", uri]
    assert main(CaptioningTask(), [*args, "--predict", str(folder), "--output", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(table["file"]) == ["bar.png", "noise.JPG"]
    assert lines == [f"{f}: {c}".rstrip() for f, c in zip(table["file"], table["caption"])]
    vocabulary = result.report.artifacts["vocabulary"]
    vocab = logged_vocabulary(vocabulary)
    tokens, _ = generate(result.model, images, vocab, vocabulary["max_tokens"] + 1)
    assert list(table["caption"]) == [detokenize(vocab.decode(row)) for row in tokens]

    assert main(CaptioningTask(), [*args, "--predict", str(folder / "bar.png")]) == 0
    assert capsys.readouterr().out.splitlines() == lines[:1]


@pytest.mark.parametrize("make", ["empty folder", "corrupt image", "missing path"])
def test_predict_bad_images_are_one_line_exit_2(trained, tmp_path, capsys, make):
    _, _, uri, _ = trained
    run_id = runs_of(uri, "captioning")[0].info.run_id
    source = tmp_path / "in"
    if make != "missing path":
        source.mkdir()
    if make == "corrupt image":
        (source / "broken.png").write_bytes(b"\x89PNG not really")
    argv = ["--model-uri", f"runs:/{run_id}/model", "--tracking-uri", uri, "--predict", str(source)]
    assert main(CaptioningTask(), argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.parametrize("beam_width", [1, 3])
def test_greedy_and_beam_decode_shapes(trained, beam_width):
    result, _, _, _ = trained
    vocab = logged_vocabulary(result.report.artifacts["vocabulary"])
    images = np.zeros((5, 64, 64, 1), np.uint8)
    tokens, attention = generate(result.model, images, vocab, 9, beam_width=beam_width)
    assert tokens.shape == (5, 9) and attention.shape == (5, 9, 64)
    live = tokens != 0
    np.testing.assert_allclose(attention.sum(-1)[live], 1.0, atol=1e-4)


@pytest.mark.parametrize("cell,attention", [("gru", "luong")])
def test_folder_run_with_other_cell_and_attention(workdir, tracking_uri, capsys, cell, attention):
    folder = caption_folder(workdir / "flickr")
    code = main(CaptioningTask(), ["--data", str(folder), "--image-size", "48", "--epochs", "1",
                                   "--units", "16", "--filters", "4", "--cell", cell,
                                   "--attention", attention, "--beam-width", "2",
                                   "--tracking-uri", tracking_uri, "--no-log-model"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (logged,) = runs_of(tracking_uri, "captioning")
    assert "test_bleu_4" in logged.data.metrics and "test_object_recall" not in logged.data.metrics


def test_mobilenet_encoder_loads_weights_already_on_disk(tmp_path, monkeypatch):
    """keras.applications weight files are legacy HDF5; write one from a random MobileNetV2."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from models import captioner
    from pipelines.captioning.task import mobilenet_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    source = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(96, 96, 3)
    )
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    model = captioner((96, 96, 1), 12, units=8, encoder_weights=mobilenet_weights(96))
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert not backbone.trainable and model.get_layer("flatten_grid").input.shape[1:3] == (3, 3)
    np.testing.assert_array_equal(backbone.weights[0].numpy(), source.weights[0].numpy())


# ---- bad input ------------------------------------------------------------------------------
def _bad_folders(root: Path) -> dict[str, Path]:
    folders = {}
    for case in ("missing", "notimage", "empty", "nocaptions"):
        folders[case] = caption_folder(root / case, n=4)
    with open(folders["missing"] / "captions.txt", "a") as f:
        f.write("ghost.jpg,a ghost\n")
    (folders["notimage"] / "Images" / "img2.png").write_text("not a png")
    with open(folders["empty"] / "captions.txt", "a") as f:
        f.write("img1.png,  \n")
    (folders["nocaptions"] / "captions.txt").unlink()
    return folders


BAD_INPUTS = {
    "missing image": (["--data", "{missing}"], "names 1 image(s) missing from"),
    "non-image file": (["--data", "{notimage}"], "cannot read image"),
    "empty caption": (["--data", "{empty}"], "line 10: empty caption for img1.png"),
    "no captions file": (["--data", "{nocaptions}"], "no captions.txt in"),
    "missing folder": (["--data", "nowhere/"], "data folder not found"),
    "unknown data name": (["--data", "flickr30"], "unknown data set 'flickr30'"),
    "coco not prepared": (["--data", "tfds:coco_captions"], "is not prepared"),
    "mobilenet weights missing": (["--encoder", "mobilenet"], "never downloads them"),
    "canvas too small": (["--image-size", "32"], "--image-size must be at least 48"),
}
NO_RUN: set[str] = set()  # flag mistakes too are validated inside the run


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_a_failed_run(
    case, workdir, tracking_uri, capsys, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(workdir / "keras"))
    folders = _bad_folders(workdir)
    args, message = BAD_INPUTS[case]
    args = [a.format(**{k: str(v) for k, v in folders.items()}) for a in args]
    code = main(CaptioningTask(), [*TINY_FLAGS, *args, "--tracking-uri", tracking_uri,
                                   "--output", str(workdir / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    runs = runs_of(tracking_uri, "captioning")
    if case in NO_RUN:
        assert runs == []
    else:
        assert [r.info.status for r in runs] == ["FAILED"]
        assert message in runs[0].data.tags["error"]
    assert not (workdir / "out" / "captions.csv").exists()
    assert not (workdir / "out" / "metrics.json").exists()


def test_cli_process_prints_one_clean_error_line(workdir):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.captioning", "--data", "missing/"],
        capture_output=True, text=True, cwd=workdir, timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: data folder not found: missing/"


def test_help_lists_task_flags_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(CaptioningTask(), ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--attention", "--beam-width", "--encoder", "--train-scenes", "--cell", "--tune"):
        assert flag in out
    assert "default: mnist_scenes" in out


def test_photos_are_read_upright_and_16_bit_images_are_not_white(tmp_path):
    """A phone stores a portrait photo landscape with an EXIF orientation; PIL's own 16-bit to
    8-bit conversion clipped every pixel to 255."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # white left half, black right half
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    upright = image_builders.load_image(tmp_path / "photo.jpg", 40, 1)[..., 0]
    assert upright[:15].mean() > 200 and upright[25:].mean() < 50  # white on top

    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(tmp_path / "scan.png")
    grey = image_builders.load_image(tmp_path / "scan.png", 8, 3)
    assert grey.shape == (8, 8, 3) and np.all(np.abs(grey.astype(int) - 117) <= 1)
