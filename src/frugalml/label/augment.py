"""Text augmentation by simple token operations (EDA, Wei & Zou 2019, without its WordNet step).

The maintained augmentation libraries need downloads (WordNet, translation or language models)
that an offline machine lacks, so this module does what works anywhere: swap two words, delete a
word, duplicate a word, or make a keyboard-neighbour typo. Each original yields at most `per_row`
synthetic rows, never a copy of any existing text; every row says whether it is synthetic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from frugalml.errors import FrugalError

MAX_PER_ROW = 10
KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _neighbours(char: str) -> str:
    for row in KEYBOARD:
        if char in row:
            at = row.index(char)
            return row[max(0, at - 1) : at] + row[at + 1 : at + 2]
    return ""


def swap(words: list[str], rng: random.Random) -> list[str]:
    if len(words) < 2:
        return words
    i, j = rng.sample(range(len(words)), 2)
    words = list(words)
    words[i], words[j] = words[j], words[i]
    return words


def delete(words: list[str], rng: random.Random) -> list[str]:
    if len(words) < 3:  # keep short texts recognisable
        return words
    i = rng.randrange(len(words))
    return words[:i] + words[i + 1 :]


def duplicate(words: list[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(words))
    return words[: i + 1] + words[i:]


def typo(words: list[str], rng: random.Random) -> list[str]:
    # Characters of the word itself, lower-cased one by one: "İ".lower() is two characters, so
    # positions in word.lower() are not positions in the word.
    candidates = [i for i, w in enumerate(words) if len(w) > 3 and any(_neighbours(c.lower()) for c in w)]
    if not candidates:
        return words
    i = rng.choice(candidates)
    word = words[i]
    spots = [k for k, c in enumerate(word) if _neighbours(c.lower())]
    k = rng.choice(spots)
    words = list(words)
    words[i] = word[:k] + rng.choice(_neighbours(word[k].lower())) + word[k + 1 :]
    return words


OPERATIONS: dict[str, Callable[[list[str], random.Random], list[str]]] = {
    "swap": swap,
    "delete": delete,
    "duplicate": duplicate,
    "typo": typo,
}


def augment_texts(
    texts: Sequence[str],
    per_row: int = 2,
    operations: Sequence[str] = ("swap", "delete", "typo"),
    seed: int = 0,
) -> list[list[str]]:
    """Up to `per_row` distinct variants of each text, none equal to any input or other variant."""
    if not 1 <= per_row <= MAX_PER_ROW:
        raise FrugalError(f"per_row must be between 1 and {MAX_PER_ROW}, got {per_row}")
    unknown = sorted(set(operations) - set(OPERATIONS))
    if unknown or not operations:
        raise FrugalError(f"unknown operation(s) {unknown}; choose from {', '.join(OPERATIONS)}")
    rng = random.Random(seed)
    seen = set(texts) | {" ".join(t.split()) for t in texts}  # whitespace-only changes are copies
    variants = []
    for text in texts:
        words = text.split()
        found: list[str] = []
        for _ in range(per_row * 4):  # a few tries: short texts have few distinct variants
            if len(found) == per_row or not words:
                break
            candidate = " ".join(OPERATIONS[rng.choice(list(operations))](words, rng))
            if candidate not in seen:
                seen.add(candidate)
                found.append(candidate)
        variants.append(found)
    return variants
