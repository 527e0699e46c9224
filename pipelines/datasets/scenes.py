"""Captioned scenes of real small images (MNIST digits, Fashion-MNIST items) on a larger canvas.

A scene holds 1-4 objects; its layout picks the phrasing, so a caption is a deterministic
function of what is visible (BLEU close to 1 is reachable) while the corpus still has several
sentence shapes:

* one object:            "a large 7"
* two side by side:      "a small 7 to the left of a large 3"
* two stacked:           "a large 2 above a small 5"
* three in a row:        "three digits: 1, 4 and 9"            (left to right)
* four in a 2x2 grid:    "four digits: 6, 0, 8 and 2"          (reading order)

"small" and "large" are only used where they are named, and then are clearly apart
(a quarter vs. 0.44 of the canvas); other objects get a random size in between. The source
images are split into disjoint pools first, so no test scene reuses a training image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MIN_CANVAS = 48
_COUNT_WORDS = {3: "three", 4: "four"}


@dataclass
class Scene:
    """One canvas: the image, its caption and what is on it (``boxes`` rows: top, left, size)."""

    image: np.ndarray
    caption: str
    labels: list[int]
    boxes: list[tuple[int, int, int]]
    sources: list[int]


def disjoint_pools(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Shuffled, disjoint index pools of ``range(n)`` with the given shares (the last takes the
    rest), so each split's scenes are drawn from images no other split uses."""
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    pools = np.split(order, bounds)
    if any(len(p) == 0 for p in pools):
        raise ValueError(f"{n} images cannot fill {len(fractions)} non-empty pools")
    return pools


def _sizes(canvas: int) -> dict[str, int]:
    return {"small": round(0.25 * canvas), "large": round(0.44 * canvas)}


def _slots(count: int, canvas: int, rng: np.random.Generator) -> tuple[str, list]:
    """The arrangement and, per object, its cell ``(top, left, height, width)`` in reading order."""
    half, third = canvas // 2, canvas // 3
    if count == 1:
        return "single", [(0, 0, canvas, canvas)]
    if count == 2:
        if rng.random() < 0.5:
            return "row", [(0, 0, canvas, half), (0, half, canvas, canvas - half)]
        return "column", [(0, 0, half, canvas), (half, 0, canvas - half, canvas)]
    if count == 3:
        return "row", [(0, i * third, canvas, third) for i in range(3)]
    return "grid", [(r * half, c * half, half, half) for r in range(2) for c in range(2)]


def layout(count: int, canvas: int, rng: np.random.Generator) -> tuple[str, list, list[str]]:
    """Random boxes ``(top, left, size)`` for ``count`` objects and their size words.

    Two objects share a centre line (plus a little jitter) across their arrangement, so a
    pair is never diagonal and "to the left of" vs "above" is always visible.
    """
    arrangement, slots = _slots(count, canvas, rng)
    sizes = _sizes(canvas)
    line = int(rng.integers(sizes["large"] // 2, canvas - sizes["large"] // 2 + 1))
    boxes, words = [], []
    for top, left, height, width in slots:
        if count <= 2:
            word = "small" if rng.random() < 0.5 else "large"
            size = sizes[word]
        else:
            word = ""
            size = int(rng.integers(sizes["small"] - 2, min(height, width, sizes["large"]) + 1))
        y = top + int(rng.integers(0, height - size + 1))
        x = left + int(rng.integers(0, width - size + 1))
        if count == 2:
            across = int(np.clip(line - size // 2 + rng.integers(-2, 3), 0, canvas - size))
            y, x = (across, x) if arrangement == "row" else (y, across)
        boxes.append((y, x, size))
        words.append(word)
    return arrangement, boxes, words


def describe(arrangement: str, names: list[str], size_words: list[str], noun: str) -> str:
    """The caption of a layout; objects are listed in reading order."""
    if len(names) == 1:
        return f"a {size_words[0]} {names[0]}"
    if len(names) == 2:
        relation = "to the left of" if arrangement == "row" else "above"
        return f"a {size_words[0]} {names[0]} {relation} a {size_words[1]} {names[1]}"
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"{_COUNT_WORDS[len(names)]} {noun}s: {listed}"


def _paste(canvas: np.ndarray, patch: np.ndarray, box: tuple[int, int, int]) -> None:
    y, x, size = box
    resized = np.asarray(Image.fromarray(patch).resize((size, size), Image.BILINEAR))
    region = canvas[y : y + size, x : x + size]
    np.maximum(region, resized, out=region)


def make_scene(
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    class_names: list[str],
    noun: str,
    canvas: int,
    rng: np.random.Generator,
) -> Scene:
    """One scene from images of ``pool`` (indices into ``images``: uint8 ``[N, h, w]``)."""
    if canvas < MIN_CANVAS:
        raise ValueError(f"canvas must be at least {MIN_CANVAS} pixels, got {canvas}")
    count = int(rng.integers(1, 5))
    arrangement, boxes, size_words = layout(count, canvas, rng)
    sources = [int(s) for s in rng.choice(pool, size=count, replace=len(pool) < count)]
    image = np.zeros((canvas, canvas), np.uint8)
    for source, box in zip(sources, boxes):
        _paste(image, images[source], box)
    scene_labels = [int(labels[s]) for s in sources]
    caption = describe(arrangement, [class_names[k] for k in scene_labels], size_words, noun)
    return Scene(image[..., None], caption, scene_labels, boxes, sources)


def make_scenes(
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    count: int,
    class_names: list[str],
    noun: str,
    canvas: int,
    seed: int,
) -> list[Scene]:
    """``count`` scenes drawn (deterministically for a seed) from the images in ``pool``."""
    rng = np.random.default_rng(seed)
    return [make_scene(images, labels, pool, class_names, noun, canvas, rng) for _ in range(count)]
