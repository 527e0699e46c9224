"""Text as people write it, turned into the tokens every part of the sentiment model reads.

Critics write edited prose; tweets and product reviews do not. One normaliser, run inside the
saved model (the vocabularies' ``standardize``), so training and prediction see the same tokens:

- case folded, but a word written in CAPITALS is preceded by ``xxup`` (emphasis);
- URLs become ``xxurl`` and @mentions ``xxuser`` (neutral placeholders, not a thousand
  one-off words);
- hashtags are split into words: ``#NotHappy`` by its capitals, ``#bestdayever`` by the most
  frequent segmentation (word ranks of the GloVe vocabulary, Zipf's law);
- emoticons become the word they mean (``:)`` -> ``smiling``, ``<3`` -> ``love``) and emoji
  their Unicode name (``😂`` -> ``face with tears of joy``), so they carry sentiment through
  words the pretrained vectors and lexicons know;
- elongations are undone (``soooo`` -> ``so``, ``goooood`` -> ``good``: of the spellings with
  each run of a letter cut to one or two, the most frequent English word) and marked
  ``xxelong``; ``!!`` and more become ``!`` and ``xxexcl``;
- contractions split as in GloVe's tokenisation (``don't`` -> ``do n't``, also the
  apostrophe-less ``dont``), so negations are visible words;
- :func:`mark_negation` prefixes ``neg_`` to the words in a negation's scope (after ``not``,
  ``n't``, ``never``, ``no`` ... up to the next punctuation or ``but``), for the bag-of-words
  parts; the recurrent network reads word order itself.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import unicodedata
from collections.abc import Sequence

URL, USER, CAPS, ELONGATED, EXCLAIMED = "xxurl", "xxuser", "xxup", "xxelong", "xxexcl"
SPECIAL_TOKENS = (URL, USER, CAPS, ELONGATED, EXCLAIMED)
NEGATED = "neg_"

# Western emoticons, by what they express: the word stands in for the face.
EMOTICONS = {
    "smiling": ":) :-) :] =) =] :o) :3 (: (-: ^_^ ^^ :>",
    "laughing": ":D :-D =D xD XD 8D",
    "winking": ";) ;-) ;D",
    "playful": ":P :-P :p :-p =P ;P ;p",
    "kiss": ":* :-* ;*",
    "frowning": ":( :-( :[ =( ): )-: :<",
    "crying": ":'( :'-( ;( ;-( T_T",
    "skeptical": ":/ :-/ :\\ =/ :S",
    "surprised": ":O :-O :o :-o",
    "love": "<3 <33 <333",
    "heartbroken": "</3",
}
_EMOTICON_WORD = {face: word for word, faces in EMOTICONS.items() for face in faces.split()}
_EMOTICON = re.compile(
    r"(?:(?<=\s)|^)("
    + "|".join(re.escape(face) for face in sorted(_EMOTICON_WORD, key=len, reverse=True))
    + r")(?=\s|$|[.,!?])"
)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_USER = re.compile(r"(?<![\w@])@\w+")
_HASHTAG = re.compile(r"(?<![\w#])#([A-Za-z][A-Za-z0-9_]*)")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "`": "'"})
_BOUNDARY = "\ue000"  # a clause boundary that is no token of its own
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)*|'[A-Za-z]+|!+|\?+|\.{2,}|[.,;:\ue000]")
_CONTRACTION = re.compile(r"^(\w+)(n't|'s|'m|'re|'ve|'ll|'d)$")
_NEGATIONS_WITHOUT_APOSTROPHE = (
    "dont didnt doesnt isnt wasnt arent werent couldnt wouldnt shouldnt havent hasnt hadnt"
)
_WITHOUT_APOSTROPHE = {w: (w[:-2], "n't") for w in _NEGATIONS_WITHOUT_APOSTROPHE.split()} | {
    "cant": ("ca", "n't"),
    "wont": ("wo", "n't"),
    "aint": ("ai", "n't"),
}
_RUN = re.compile(r"(\w)\1{2,}")
NEGATORS = frozenset(
    ("not", "n't", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere",
     "cannot", "without")
)  # fmt: skip
_SCOPE_END = frozenset(
    (".", ",", ";", ":", "!", "?", "...", "but", "however", "although", "though", "yet",
     _BOUNDARY)
)  # fmt: skip
_EMOJI_SKIP = {"\u200d", "\ufe0f", "\ufe0e", "\u20e3"}


def normalise(text: str, negation: bool = False) -> str:
    """``text`` as space-separated tokens (see the module docstring)."""
    return " ".join(tokenise(text, negation))


def tokenise(text: str, negation: bool = False) -> list[str]:
    """The normalised tokens of ``text``; with ``negation``, words in a negation's scope
    are prefixed ``neg_`` (:func:`mark_negation`)."""
    text = unicodedata.normalize("NFKC", str(text)).translate(_QUOTES)
    text = _URL.sub(f" {URL} ", text)
    text = _USER.sub(f" {USER} ", text)
    # An emoticon or emoji closes a clause like punctuation does (a negation ends there).
    text = _EMOTICON.sub(lambda m: f" {_BOUNDARY} {_EMOTICON_WORD[m.group(1)]} ", text)
    text = _replace_emoji(text)
    text = _HASHTAG.sub(lambda m: " " + " ".join(split_hashtag(m.group(1))) + " ", text)
    tokens: list[str] = []
    for piece in _TOKEN.findall(text):
        tokens += _word_tokens(piece)
    if negation:
        tokens = mark_negation(tokens)
    return [t for t in tokens if t != _BOUNDARY]


def _word_tokens(piece: str) -> list[str]:
    """One matched piece: punctuation, or a word with its emphasis marks and split contractions."""
    if piece[0] == "!":
        return ["!", EXCLAIMED] if len(piece) > 1 else ["!"]
    if piece == _BOUNDARY:
        return [piece]
    if piece[0] in "?.,;:":
        return [piece[0] if piece[0] != "." or len(piece) == 1 else "..."]
    marks = [CAPS] if sum(c.isalpha() for c in piece) >= 2 and piece.isupper() else []
    word = piece.lower()
    if piece in (URL, USER):
        return [piece]
    plain = undo_elongation(word)
    if plain != word:
        marks.append(ELONGATED)
    return marks + split_contraction(plain)


def split_contraction(word: str) -> list[str]:
    """``don't`` -> ``do n't``, ``it's`` -> ``it 's``, ``dont`` -> ``do n't`` (GloVe's tokens)."""
    if word in _WITHOUT_APOSTROPHE:
        return list(_WITHOUT_APOSTROPHE[word])
    match = _CONTRACTION.match(word)
    if match and match.group(1):
        stem, suffix = match.groups()
        return [stem, suffix]
    return [word.replace("'", "")] if "'" in word else [word]


def undo_elongation(word: str) -> str:
    """The most frequent spelling with every run of 3+ equal characters cut to one or two
    (``soooo`` -> ``so``, ``gooood`` -> ``good``); two of them when none is a known word."""
    runs = list(_RUN.finditer(word))[:3]
    if not runs:
        return word
    candidates = []
    for lengths in itertools.product((1, 2), repeat=len(runs)):
        out, last = [], 0
        for run, n in zip(runs, lengths, strict=True):
            out += [word[last : run.start()], run.group(1) * n]
            last = run.end()
        candidates.append("".join(out) + word[last:])
    ranks = word_ranks()
    known = [c for c in candidates if c in ranks]
    return min(known, key=ranks.__getitem__) if known else candidates[-1]


def split_hashtag(tag: str) -> list[str]:
    """A hashtag's words: by its capitals (``NotHappy``), else the segmentation of most
    probable words under a Zipf model of word ranks (``bestdayever``)."""
    if not tag.islower() and not tag.isupper():
        return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", tag)]
    return segment(tag.lower())


def segment(text: str, longest: int = 20) -> list[str]:
    """Viterbi word segmentation: cost of a word ``log(rank + 2)``, unknown pieces at a high
    cost per character, so ``bestdayever`` -> ``best day ever``."""
    ranks = word_ranks()
    unknown = math.log(len(ranks) + 2)

    def cost(word: str) -> float:
        rank = ranks.get(word)
        return math.log(rank + 2) if rank is not None else unknown * (len(word) + 1)

    best = [0.0] + [math.inf] * len(text)
    start = [0] * (len(text) + 1)
    for end in range(1, len(text) + 1):
        for begin in range(max(0, end - longest), end):
            total = best[begin] + cost(text[begin:end])
            if total < best[end]:
                best[end], start[end] = total, begin
    words, end = [], len(text)
    while end > 0:
        words.append(text[start[end] : end])
        end = start[end]
    return words[::-1]


def mark_negation(tokens: Sequence[str]) -> list[str]:
    """``neg_`` before every word in a negation's scope: from a negator to the next
    punctuation or contrast word (``but``), the negator itself unmarked (Das & Chen 2001,
    Pang et al. 2002)."""
    out, negated = [], False
    for token in tokens:
        if token in _SCOPE_END:
            negated = False
            out.append(token)
        elif token in NEGATORS:
            negated = True
            out.append(token)
        elif negated and token not in SPECIAL_TOKENS:
            out.append(NEGATED + token)
        else:
            out.append(token)
    return out


def _replace_emoji(text: str) -> str:
    """Each emoji (a pictographic symbol) as the words of its Unicode name; skin tones,
    joiners and variation selectors dropped."""
    if text.isascii():
        return text
    out = []
    for char in text:
        if char in _EMOJI_SKIP or "\U0001f3fb" <= char <= "\U0001f3ff":
            continue
        if unicodedata.category(char) == "So":
            name = unicodedata.name(char, "").lower()
            out.append(f" {_BOUNDARY} {name} " if name else " ")
        else:
            out.append(char)
    return "".join(out)


@functools.cache
def word_ranks(limit: int = 100_000) -> dict[str, int]:
    """Frequency rank of the ``limit`` most frequent alphabetic words of the GloVe vocabulary
    (its rows are in frequency order): the dictionary of elongations and hashtags."""
    from pipelines.core.embeddings import pretrained_vectors

    rows, _ = pretrained_vectors("glove")
    words = (w for w in sorted(rows, key=rows.__getitem__) if w.isalpha())
    return {w: rank for rank, w in enumerate(itertools.islice(words, limit))}
