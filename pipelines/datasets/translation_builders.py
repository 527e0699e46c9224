"""English→French sentence pairs: the gettext catalogs Debian installs, and Anki/Tatoeba files.

Every Debian/Ubuntu package with translated messages installs compiled gettext catalogs
(``/usr/share/locale/fr/LC_MESSAGES/*.mo``): tens of thousands of interface messages that people
translated. Read with Python's ``gettext`` module and cleaned (accelerators, French spacing,
trailing colons and ellipses removed on both sides; placeholders, multi-line help texts,
plural forms and untranslated entries dropped; deduplicated by English text), they are a real,
offline parallel corpus. ``tfds.load("gettext_en_fr")`` works after ``import pipelines.datasets``;
the prepared copy is keyed by a fingerprint of the catalogs, so a package upgrade re-reads them.
"""

from __future__ import annotations

import dataclasses
import gettext
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import prepare
from pipelines.core.text import read_text

SYSTEM_LOCALE_DIR = "/usr/share/locale"
LANGUAGE = "fr"
MIN_WORDS = 3

# printf and strftime (%s, %-5.2f, %(name)s, %1$s, %H), brace ({0}, {name}), shell ($1, ${VAR})
# and Windows (%VAR%) placeholders: a model cannot translate what it never sees filled in.
_PLACEHOLDER = re.compile(
    r"%(\(\w+\)|\d+\$)?[-+#0'I]*(\d+|\*)?(\.(\d+|\*))?[A-Za-z%]|\{[^{}]*\}|\$\{?\w+\}?|%\w+%|<\w+>"
)
_TRAILING = re.compile(r"(\s*(:|…|\.\.\.))+$")
_SPACES = re.compile(r"[\s\u00a0\u202f]+")


def clean_message(text: str) -> str | None:
    """One-line message without accelerator, trailing colon/ellipsis or odd spacing; None when
    it cannot be a training sentence (multi-line, empty, or with a placeholder)."""
    text = text.strip()
    if not text or "\n" in text or _PLACEHOLDER.search(text):
        return None
    if text.count("_") == 1:  # GTK/Qt accelerator: "_Open", "Be_fore"
        text = text.replace("_", "")
    if text.count("&") == 1 and re.search(r"&\w", text):
        text = text.replace("&", "")
    text = _SPACES.sub(" ", _TRAILING.sub("", text)).strip()
    return text or None


def find_catalogs(locale_dir: str | Path = SYSTEM_LOCALE_DIR) -> list[Path]:
    """The French ``.mo`` catalogs under ``locale_dir``, sorted by name; DataError if none."""
    folder = Path(locale_dir) / LANGUAGE / "LC_MESSAGES"
    catalogs = sorted(folder.glob("*.mo"))
    if not catalogs:
        raise DataError(
            f"no French gettext catalogs (*.mo) in {folder}; install packages with French "
            "messages (e.g. coreutils, apt), point --locale-dir elsewhere, or use --data fra.txt"
        )
    return catalogs


def catalog_fingerprint(catalogs: Iterable[Path]) -> str:
    """Short digest of the catalogs' names and bytes: the prepared data set's cache key."""
    digest = hashlib.sha256()
    for path in catalogs:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def catalog_pairs(path: Path, min_words: int = MIN_WORDS) -> Iterator[tuple[str, str]]:
    """Cleaned (english, french) pairs of one catalog, sorted by English text.

    Plural entries (tuple keys) are skipped; a message context (``ctx\\x04msgid``) is dropped
    from the key. Pairs whose sides are equal are untranslated and skipped.
    """
    try:
        with path.open("rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read gettext catalog {path}: {exc}") from None
    pairs = []
    for key, value in catalog.items():
        if not isinstance(key, str) or not key:
            continue
        english = clean_message(key.split("\x04")[-1])
        french = clean_message(value)
        if english is None or french is None or english == french:
            continue
        if min(len(english.split()), len(french.split())) >= min_words:
            pairs.append((english, french))
    return iter(sorted(pairs))


def read_catalogs(
    catalogs: Iterable[Path], min_words: int = MIN_WORDS
) -> list[tuple[str, str, str]]:
    """``(english, french, catalog name)`` of all catalogs in name order; the first translation
    of an English text wins."""
    seen: set[str] = set()
    pairs = []
    for path in catalogs:
        for english, french in catalog_pairs(path, min_words):
            if english not in seen:
                seen.add(english)
                pairs.append((english, french, path.stem))
    return pairs


def read_anki(path: str | Path) -> list[tuple[str, str]]:
    """``english<TAB>french[<TAB>attribution]`` lines (Tatoeba/Anki ``fra.txt``), deduplicated.

    Blank lines are skipped; a line without a tab or with an empty side is an error naming
    its line number; an empty or non-UTF-8 file fails in `read_text`.
    """
    text = read_text(path)
    pairs, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(
                f"{path}:{number}: expected 'english<TAB>french[<TAB>attribution]', "
                f"got {line[:60]!r}"
            )
        pair = (fields[0].strip(), fields[1].strip())
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    if not pairs:
        raise DataError(f"{path} has no sentence pairs")
    return pairs


@dataclasses.dataclass(eq=False)
class CatalogConfig(tfds.core.BuilderConfig):
    """Which locale directory to read; the loader names each config by the catalogs' digest."""

    locale_dir: str = SYSTEM_LOCALE_DIR


class GettextEnFr(tfds.core.GeneratorBasedBuilder):
    """English→French interface messages from the system's French gettext catalogs."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [CatalogConfig(name="system", description="/usr/share/locale")]

    def _info(self) -> tfds.core.DatasetInfo:
        catalogs = find_catalogs(self.builder_config.locale_dir)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "en": tfds.features.Text(),
                    "fr": tfds.features.Text(),
                    "catalog": tfds.features.Text(),
                }
            ),
            supervised_keys=("en", "fr"),
            homepage="https://www.gnu.org/software/gettext/",
            description=(
                f"Human translations of interface messages in {len(catalogs)} French gettext "
                f"catalogs under {self.builder_config.locale_dir} (each package's own licence)"
            ),
            metadata=tfds.core.MetadataDict(
                catalogs=[p.name for p in catalogs],
                catalog_count=len(catalogs),
                fingerprint=catalog_fingerprint(catalogs),
            ),
        )

    def _split_generators(self, dl_manager):
        return {"full": self._generate_examples()}

    def _generate_examples(self):
        for english, french, catalog in read_catalogs(
            find_catalogs(self.builder_config.locale_dir)
        ):
            yield english, {"en": english, "fr": french, "catalog": catalog}


def load_gettext_pairs(
    locale_dir: str | Path = SYSTEM_LOCALE_DIR, data_dir: str | None = None
) -> tuple[list[tuple[str, str]], dict]:
    """All pairs of the ``gettext_en_fr`` builder for ``locale_dir`` in a deterministic order,
    plus what the builder recorded (catalog names and count)."""
    catalogs = find_catalogs(locale_dir)
    name = f"catalogs_{catalog_fingerprint(catalogs)}"
    config = CatalogConfig(name=name, description=str(locale_dir), locale_dir=str(locale_dir))
    builder = GettextEnFr(config=config, data_dir=data_dir)
    prepare(builder)
    examples = tfds.as_numpy(builder.as_dataset(split="full", shuffle_files=False))
    pairs = sorted((e["en"].decode(), e["fr"].decode()) for e in examples)
    if not pairs:
        raise DataError(f"the French catalogs under {locale_dir} hold no usable sentence pairs")
    metadata = builder.info.metadata
    return pairs, {"catalogs": list(metadata["catalogs"]), "catalog_count": len(catalogs)}
