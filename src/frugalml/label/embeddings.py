"""Sentence embeddings from a base encoder or a tuned bundle, cached on disk per text.

Every labelling technique works on the same vectors the `head` tuning method uses (mean-pooled,
L2-normalized encoder states), so a threshold or a label-issue score found here holds for the
classifier that tune builds; `label auto` first smooths them over each text's nearest texts
(label.neighbours). Encoding is the expensive part (BANKING77's 13k texts take about 40 s on
two cores), so each vector is cached under FRUGALML_HOME/cache/embeddings, keyed by the encoder's
identity and the sha256 of the text: a second command over the same texts encodes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from frugalml.errors import FrugalError
from frugalml.progress import Reporter, SilentReporter
from frugalml.settings import get_settings

MAX_LENGTH = 128


@dataclass(frozen=True)
class Encoder:
    """Where embeddings come from: a base model name/folder, or a torch bundle (its tuned encoder)."""

    base: str = "minilm"
    bundle: str | None = None  # bundle id, id prefix or folder; wins over `base`

    def describe(self) -> str:
        return f"bundle {self.bundle}" if self.bundle else f"base {self.base}"


def embed(
    texts: Sequence[str],
    encoder: Encoder | None = None,
    cache_dir: Path | bool | None = True,
    reporter: Reporter | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Embeddings of `texts`, shape (n, hidden), float32, rows in input order.

    `cache_dir=True` uses FRUGALML_HOME/cache/embeddings; a path uses that folder; False/None
    disables the cache.
    """
    encoder = encoder or Encoder()
    if not texts:
        raise FrugalError("nothing to embed: no texts")
    identity, load = _resolve(encoder)
    cache = _Cache(_cache_folder(cache_dir), identity) if cache_dir else None
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:32] for t in texts]
    known = cache.read() if cache else {}
    missing = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    if missing:  # load the model only when something is not cached
        from frugalml.models.batching import run_model, tokenize

        model, tokenizer = load()
        with (reporter or SilentReporter()).task(f"embedding {len(missing):,} texts", None):
            ids = tokenize(tokenizer, [texts[i] for i in missing], MAX_LENGTH)
            vectors = run_model(model, ids, tokenizer.pad_token_id, batch_size, pool=True)
        fresh = {keys[i]: vectors[row] for row, i in enumerate(missing)}
        known.update(fresh)
        if cache:
            cache.add(fresh)
    return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)


def _cache_folder(cache_dir: Path | Literal[True]) -> Path:
    return get_settings().home / "cache" / "embeddings" if cache_dir is True else Path(cache_dir)


def _resolve(encoder: Encoder) -> tuple[str, Callable[[], tuple]]:
    """(identity string for the cache key, loader of (model with a `pool` method, tokenizer))."""
    from frugalml.models import load_tokenizer, new_classifier, resolve_base

    if encoder.bundle:
        from frugalml.lineage import open_store, resolve_bundle
        from frugalml.runtime import load_predictor
        from frugalml.runtime.torch_predictor import TorchPredictor

        bundle = resolve_bundle(encoder.bundle, open_store())
        if bundle.format != "torch":
            raise FrugalError(
                f"bundle {bundle.id} is {bundle.format}; embeddings need a torch bundle "
                f"(use its parent {bundle.parents[0] if bundle.parents else '(none)'})"
            )
        weights = sorted(f["sha256"] for n, f in bundle.files.items() if n.endswith(".safetensors"))

        def load_bundle_model() -> tuple:
            predictor = load_predictor(bundle)  # a TorchPredictor: it holds the tuned encoder
            assert isinstance(predictor, TorchPredictor)  # the bundle's format is torch
            return predictor.model, predictor.tokenizer

        return f"bundle:{bundle.id}:{','.join(weights)}", load_bundle_model
    location = resolve_base(encoder.base)
    config = Path(location) / "config.json"
    stamp = config.read_text() if config.is_file() else location

    def load_base() -> tuple:
        # The head is never used: only `pool`, the same pooling that tune's classifier applies.
        return new_classifier(encoder.base, ["a", "b"]), load_tokenizer(encoder.base)

    return f"base:{location}:{stamp}:{MAX_LENGTH}", load_base


class _Cache:
    """One .npz per encoder: text keys and vectors. Writes are atomic; concurrent writers merge."""

    def __init__(self, folder: Path, identity: str):
        self.path = folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:24]}.npz"

    def read(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path) as stored:
                return dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
        except (OSError, ValueError, KeyError):
            return {}  # a damaged cache is only a cache: recompute

    def add(self, fresh: dict[str, np.ndarray]) -> None:
        merged = {**self.read(), **fresh}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.stem}-{os.getpid()}.npz")
        np.savez(temp, keys=np.array(list(merged)), vectors=np.stack(list(merged.values())))
        os.replace(temp, self.path)
