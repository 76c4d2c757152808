"""Seeded input noise for robustness scores: typos within words, and word-level slips.

Plain functions over lists of texts; the random source is a numpy Generator the caller seeds, so
the same seed gives the same noisy texts. A noisy text is never empty: where the noise would
leave nothing, the text stays as it was.

- `typos`: each letter, with probability `rate`, is swapped with the next letter, dropped,
  doubled or replaced by a neighbour on a QWERTY keyboard (case kept).
- `word_noise`: each word, with probability `rate`, is dropped, repeated or moved to another
  place at most `window` words away.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from frugalml.errors import FrugalError

KINDS = ("typos", "words")
DEFAULT_RATE = 0.1

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Each letter's neighbours on a staggered QWERTY keyboard: same row left and right, the two
    keys above (same column and one to the right) and the two below (one to the left, same)."""
    where = {key: (r, c) for r, row in enumerate(_ROWS) for c, key in enumerate(row)}
    near = {}
    for key, (r, c) in where.items():
        spots = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
        near[key] = "".join(_ROWS[i][j] for i, j in spots if 0 <= i < len(_ROWS) and 0 <= j < len(_ROWS[i]))
    return near


NEIGHBOURS = _keyboard_neighbours()


def parse_spec(spec: str) -> tuple[str, float]:
    """'typos' | 'typos:0.2' | 'words' | 'words:0.05' -> (kind, rate)."""
    kind, _, rate_text = spec.partition(":")
    if kind not in KINDS:
        raise FrugalError(f"unknown perturbation {kind!r}; choose {' or '.join(KINDS)}, optionally :RATE")
    try:
        rate = float(rate_text) if rate_text else DEFAULT_RATE
    except ValueError:
        raise FrugalError(f"perturbation rate {rate_text!r} is not a number (0 < rate <= 1)") from None
    if not 0 < rate <= 1:
        raise FrugalError(f"perturbation rate must be in (0, 1]; got {rate:g}")
    return kind, rate


def perturb(texts: list[str], spec: str, *, seed: int = 0) -> list[str]:
    """`texts` with the noise `spec` names (parse_spec), drawn from `seed`."""
    kind, rate = parse_spec(spec)
    rng = np.random.default_rng(seed)
    return _noise(kind)(texts, rate=rate, rng=rng)


def noisy_copies(texts: list[str], spec: str, *, copies: int, seed: int) -> list[str]:
    """`copies` noisy versions of every text (all the first copies, then all the second, ...),
    for training on noise: drawn from a stream of `seed` apart from `perturb`'s, so that a test
    set perturbed with the same seed gets other noise."""
    kind, rate = parse_spec(spec)
    rng = np.random.default_rng([seed, 1])
    return [text for _ in range(copies) for text in _noise(kind)(texts, rate=rate, rng=rng)]


def _noise(kind: str) -> Callable[..., list[str]]:
    return typos if kind == "typos" else word_noise


def epoch_noise(texts: list[str], spec: str, *, share: float, seed: int, epoch: int) -> list[str]:
    """`texts` with about `share` of them swapped for a noisy version: one epoch's training texts
    when the noise is drawn afresh every epoch (a stream of its own per seed and epoch)."""
    kind, rate = parse_spec(spec)
    rng = np.random.default_rng([seed, 2, epoch])
    chosen = np.flatnonzero(rng.random(len(texts)) < share)
    out = list(texts)
    for i, text in zip(chosen, _noise(kind)([texts[i] for i in chosen], rate=rate, rng=rng), strict=True):
        out[i] = text
    return out


def typos(texts: list[str], *, rate: float = DEFAULT_RATE, rng: np.random.Generator) -> list[str]:
    """Each letter touched with probability `rate`: swap, drop, double or keyboard neighbour."""
    return [_keep_if_empty(text, _typo_text(text, rate, rng)) for text in texts]


def _typo_text(text: str, rate: float, rng: np.random.Generator) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if not char.isalpha() or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        action = int(rng.integers(4))
        if action == 0 and i + 1 < len(text) and text[i + 1].isalpha() and text[i + 1] != char:
            out += [text[i + 1], char]  # swap with the next letter, which counts as touched too
            i += 2
            continue
        if action == 1:
            pass  # dropped
        elif action == 2:
            out += [char, char]
        else:  # a keyboard neighbour; a swap that had no partner falls here too
            near = NEIGHBOURS.get(char.lower())
            if near:
                swapped = near[int(rng.integers(len(near)))]
                out.append(swapped.upper() if char.isupper() else swapped)
            else:  # a letter off the QWERTY rows (é, ß): doubled instead
                out += [char, char]
        i += 1
    return "".join(out)


def word_noise(
    texts: list[str], *, rate: float = DEFAULT_RATE, rng: np.random.Generator, window: int = 2
) -> list[str]:
    """Each word touched with probability `rate`: dropped, repeated, or moved up to `window`
    places."""
    return [_keep_if_empty(text, _word_text(text, rate, rng, window)) for text in texts]


def _word_text(text: str, rate: float, rng: np.random.Generator, window: int) -> str:
    words = text.split()
    out: list[str] = []
    moves: list[tuple[int, str]] = []  # (place in `out` to insert at, word)
    for word in words:
        if rng.random() >= rate:
            out.append(word)
            continue
        action = int(rng.integers(3))
        if action == 1:
            out += [word, word]
        elif action == 2:
            moves.append((len(out) + int(rng.integers(-window, window + 1)), word))
        # action 0: dropped
    for place, word in moves:
        out.insert(min(max(place, 0), len(out)), word)
    return " ".join(out)


def _keep_if_empty(original: str, noisy: str) -> str:
    return noisy if noisy.strip() else original
