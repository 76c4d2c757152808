"""Vocabulary trimming: keep only the tokens the domain corpus uses (plus special tokens).

MiniLM's word embeddings are 30,522 x 384, about half the model; an intent corpus uses a few
thousand of those rows. Trimming keeps the rows the corpus tokenizes to, renumbers them in their
original order and rewrites the WordPiece vocabulary to match, so the bundle's tokenizer (a plain
tokenizer.json that AutoTokenizer loads) and the smaller embedding matrix stay consistent.

Semantics: every corpus word tokenizes to the same tokens as before (WordPiece's greedy longest
match finds the same pieces when all of them are kept), so predictions on the corpus are
identical; this is verified on the corpus before the bundle is written. A word outside the
corpus is split into kept pieces by the same WordPiece rule, and becomes [UNK] when no split
exists: every token outside the kept vocabulary ends up as [UNK], never as an out-of-range id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from frugalml.bundle import Bundle
from frugalml.compress.checks import agreement, sample_texts, torch_logits
from frugalml.compress.context import CompressContext, derived_bundle, load_torch
from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier


def used_token_ids(tokenizer: PreTrainedTokenizerBase, corpus: Sequence[str]) -> list[int]:
    """Sorted ids of every token the corpus tokenizes to (untruncated), plus the special tokens."""
    used = set(tokenizer.all_special_ids)
    for row in tokenizer(list(corpus), truncation=False)["input_ids"]:
        used.update(row)
    return sorted(used)


def trimmed_tokenizer_spec(spec: dict, keep: Sequence[int]) -> dict:
    """A tokenizer.json document whose WordPiece vocabulary holds only `keep`, renumbered 0..n-1."""
    if spec.get("model", {}).get("type") != "WordPiece":
        raise FrugalError(
            f"vocabulary trimming supports WordPiece tokenizers (BERT family), "
            f"not {spec.get('model', {}).get('type')!r}"
        )
    new_id = {old: new for new, old in enumerate(keep)}
    spec = json.loads(json.dumps(spec))  # a deep copy
    spec["model"]["vocab"] = {t: new_id[i] for t, i in spec["model"]["vocab"].items() if i in new_id}
    for token in spec.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    processor = spec.get("post_processor") or {}
    for special in processor.get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    for key in ("cls", "sep"):  # BertProcessing stores [token, id] pairs
        if key in processor:
            processor[key] = [processor[key][0], new_id[processor[key][1]]]
    if spec.get("padding"):
        spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]
    return spec


def trim_model(model: FrugalTextClassifier, keep: Sequence[int], pad_id: int) -> FrugalTextClassifier:
    """Shrink the word-embedding matrix to the rows in `keep`, in place; returns the model."""
    embeddings = model.encoder.get_input_embeddings()
    rows = embeddings.weight.data[torch.as_tensor(list(keep))].clone()
    smaller = torch.nn.Embedding(len(keep), rows.shape[1], padding_idx=pad_id)
    smaller.weight.data.copy_(rows)
    model.encoder.set_input_embeddings(smaller)
    model.encoder.config.vocab_size = len(keep)
    model.encoder.config.pad_token_id = pad_id
    model.config.encoder = {**model.config.encoder, "vocab_size": len(keep), "pad_token_id": pad_id}
    return model


def trim_vocabulary(source: Bundle, context: CompressContext, check_texts: int = 512) -> Bundle:
    model, tokenizer = load_torch(source)
    corpus = context.corpus
    keep = used_token_ids(tokenizer, corpus)
    spec = trimmed_tokenizer_spec(json.loads(tokenizer.backend_tokenizer.to_str()), keep)
    sample = sample_texts(corpus, check_texts, context.seed)
    reference = torch_logits(model, tokenizer, sample)
    original_rows = model.encoder.get_input_embeddings().weight.shape[0]
    metrics = {"vocab_size": len(keep), "vocab_size_before": original_rows}

    def populate(folder: Path) -> None:
        tokenizer.save_pretrained(folder)
        (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
        for stale in ("vocab.txt", "special_tokens_map.json"):  # would describe the old vocabulary
            (folder / stale).unlink(missing_ok=True)
        trimmed_tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        _check_same_tokens(tokenizer, trimmed_tokenizer, keep, corpus)
        trimmed = trim_model(model, keep, trimmed_tokenizer.pad_token_id)
        metrics.update(agreement(reference, torch_logits(trimmed, trimmed_tokenizer, sample)))
        if metrics["agreement"] < 1.0 or metrics["max_abs_diff"] > 1e-4:
            raise FrugalError(f"vocabulary trimming changed predictions on the corpus ({metrics})")
        trimmed.save_pretrained(folder)

    return derived_bundle(
        source,
        "trim",
        populate,
        context.store,
        format="torch",
        precision=source.precision,
        options={"check_texts": check_texts},
        metrics=metrics,
    )


def _check_same_tokens(
    original: PreTrainedTokenizerBase,
    trimmed: PreTrainedTokenizerBase,
    keep: Sequence[int],
    corpus: list[str],
) -> None:
    """Every corpus text must map to the same tokens, renumbered; else refuse the trimmed vocabulary."""
    new_id = np.full(max(keep) + 1, -1, dtype=np.int64)
    new_id[np.asarray(keep)] = np.arange(len(keep))
    before = original(corpus, truncation=False)["input_ids"]
    after = trimmed(corpus, truncation=False)["input_ids"]
    for text, old, new in zip(corpus, before, after, strict=True):
        if new_id[np.asarray(old)].tolist() != new:
            raise FrugalError(f"the trimmed tokenizer splits {text!r} differently; trimming refused")
