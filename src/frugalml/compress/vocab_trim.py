"""Vocabulary trimming: keep the tokens the domain corpus uses, plus what general text needs.

MiniLM's word embeddings are 30,522 x 384, about half the model; an intent corpus uses a few
thousand of those rows. Trimming keeps the rows of:

- every token the corpus (training plus unlabelled text) tokenizes to, and the special tokens;
- the spelling pieces: every single-character token and its `##` continuation, so that any word
  made of characters the vocabulary knows still splits into pieces instead of becoming [UNK];
- the pieces of the language's most frequent words (the `wordfreq` package's list), so that
  everyday words first seen at serving time keep the pieces they had.

A 3,000-text corpus alone leaves most new words without their pieces; the spelling pieces and
frequent words cost a few thousand rows and keep text outside the corpus tokenized as before
(tests/test_compress.py measures the share of BANKING77 test texts that still are).

The kept rows are renumbered in their original order and the WordPiece vocabulary rewritten to
match, so the bundle's tokenizer (a plain tokenizer.json that AutoTokenizer loads) and the smaller
embedding matrix stay consistent. Every corpus word tokenizes to the same tokens as before
(WordPiece's greedy longest match finds the same pieces when all of them are kept), so predictions
on the corpus are identical; this is verified on the corpus before the bundle is written. Any
other word is split into kept pieces by the same WordPiece rule: every token outside the kept
vocabulary ends up split or [UNK], never an out-of-range id.
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
    for row in tokenizer(list(corpus), truncation=False)["input_ids"] if corpus else []:
        used.update(row)
    return sorted(used)


def spelling_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids of the single-character tokens and their `##` continuations: kept, they spell any word."""
    return {
        i
        for token, i in tokenizer.get_vocab().items()
        if len(token) == 1 or (token.startswith("##") and len(token) == 3)
    }


def frequent_words(count: int, language: str = "en") -> list[str]:
    """The `count` most frequent words of `language`, from the `wordfreq` package's lists."""
    if count <= 0:
        return []
    from wordfreq import available_languages, top_n_list

    if language not in available_languages():
        raise FrugalError(f"wordfreq has no word list for language {language!r}")
    return top_n_list(language, count)


def kept_token_ids(
    tokenizer: PreTrainedTokenizerBase, corpus: Sequence[str], words: int = 0, language: str = "en"
) -> list[int]:
    """Sorted ids trimming keeps: the corpus's tokens, the spelling pieces (unless `words` is
    negative: corpus only) and the pieces of the `words` most frequent words of `language`."""
    keep = set(used_token_ids(tokenizer, corpus))
    if words >= 0:
        keep |= spelling_ids(tokenizer)
        keep.update(used_token_ids(tokenizer, frequent_words(words, language)))
    return sorted(keep)


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


def trim_vocabulary(
    source: Bundle,
    context: CompressContext,
    words: int = 10000,
    language: str = "en",
    check_texts: int = 512,
) -> Bundle:
    """Keep the corpus's tokens, the spelling pieces and the pieces of the `words` most frequent
    words of `language` (`words=-1`: the corpus's tokens alone)."""
    model, tokenizer = load_torch(source)
    corpus = context.corpus
    keep = kept_token_ids(tokenizer, corpus, words, language)
    spec = trimmed_tokenizer_spec(json.loads(tokenizer.backend_tokenizer.to_str()), keep)
    sample = sample_texts(corpus, check_texts, context.seed)
    reference = torch_logits(model, tokenizer, sample)
    original_rows = model.encoder.get_input_embeddings().weight.shape[0]
    metrics = {
        "vocab_size": len(keep),
        "vocab_size_before": original_rows,
        "vocab_size_corpus": len(used_token_ids(tokenizer, corpus)),
    }

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
        options={"words": words, "language": language, "check_texts": check_texts},
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
