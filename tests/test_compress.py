"""Compression techniques on a tiny config-built BERT: shapes, agreement, bundle round trips."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
import torch
from conftest import make_rows, write_csv
from transformers import AutoTokenizer

from frugalml.bundle import Bundle, load_bundle, new_bundle_id, write_bundle
from frugalml.compress import CompressContext, apply_technique
from frugalml.compress.config import CompressConfig
from frugalml.compress.context import load_torch
from frugalml.compress.distill import augment, distillation_loss
from frugalml.compress.prune import (
    head_scores,
    keep_top,
    layer_indices,
    live_heads,
    live_neurons,
    neuron_scores,
    remove_masked_structure,
)
from frugalml.compress.search import describe, pareto_mask, recipes, select_candidate, step
from frugalml.compress.vocab_trim import trimmed_tokenizer_spec
from frugalml.data import Dataset, load_dataset
from frugalml.errors import BundleError, FrugalError
from frugalml.runtime import load_predictor
from frugalml.settings import Settings
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register

TEXTS = [
    "refund my money back please",
    "my card was stolen block it",
    "forgot password reset login",
    "i want help",
]


@pytest.fixture(scope="module")
def tuned(tiny_base, tmp_path_factory) -> Bundle:
    """A tiny fully fine-tuned 3-intent classifier, shared by the technique tests."""
    root = tmp_path_factory.mktemp("compress")
    train = write_csv(root / "train.csv", make_rows(20, seed=1))
    config = TuneConfig(method="full", base=str(tiny_base), epochs=3, batch_size=8, lr=5e-3)
    summary = tune_and_register(train, config, settings=Settings(home=root / "home"))
    return load_bundle(summary.bundle_path)


@pytest.fixture
def context(tuned, tmp_path) -> CompressContext:
    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(20, seed=1)))
    return CompressContext(store=tmp_path / "bundles", train=train, teacher=tuned)


@pytest.fixture(scope="module")
def onnx_bundle(tuned, tmp_path_factory) -> Bundle:
    root = tmp_path_factory.mktemp("onnx")
    train = load_dataset(write_csv(root / "train.csv", make_rows(20, seed=1)))
    return apply_technique("onnx", tuned, CompressContext(store=root / "bundles", train=train, teacher=tuned))


def probabilities(bundle: Bundle, texts: list[str]) -> np.ndarray:
    return load_predictor(load_bundle(bundle.path)).predict_proba(texts)


def test_onnx_export_is_fused_matches_torch_and_round_trips(tuned, onnx_bundle):
    assert onnx_bundle.format == "onnx" and onnx_bundle.parents == [tuned.id]
    assert onnx_bundle.metrics["max_abs_diff"] < 1e-4
    # ONNX Runtime's transformer fusions took: one fused attention per layer.
    assert onnx_bundle.metrics["fused_ops"]["Attention"] == 2
    graph = onnx.load(onnx_bundle.path / "model.onnx").graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    np.testing.assert_allclose(probabilities(onnx_bundle, TEXTS), probabilities(tuned, TEXTS), atol=1e-5)


def test_served_onnx_session_is_sized_for_a_call_running_alone(onnx_bundle):
    """`frugalml serve` sizes an ONNX bundle's one session for the lone call: calls side by side
    share its intra-op pool, and a call running alone uses every thread of it."""
    from frugalml.serve.runner import serving_predictor

    def pool(**threads) -> int:
        predictor = serving_predictor(str(onnx_bundle.path), **threads)
        return predictor.session.get_session_options().intra_op_num_threads

    assert pool(threads=1, lone_threads=2) == 2
    assert pool(threads=1) == 1


def test_int8_dynamic_is_smaller_and_reports_agreement(onnx_bundle, context):
    quantized = apply_technique("int8", onnx_bundle, context)
    assert quantized.precision == "int8" and quantized.parents == [onnx_bundle.id]
    for again in ("int8", "int8-static"):  # an int8 bundle is not quantized a second time
        with pytest.raises(FrugalError, match="is int8 already"):
            apply_technique(again, quantized, context)
    assert quantized.files["model.onnx"]["bytes"] < onnx_bundle.files["model.onnx"]["bytes"]
    assert {"agreement", "min_cosine", "max_abs_diff"} <= quantized.metrics.keys()
    assert quantized.metrics["agreement"] >= 0.95 and quantized.metrics["min_cosine"] > 0.99
    graph = onnx.load(quantized.path / "model.onnx").graph
    assert {node.op_type for node in graph.node} & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}
    # The classification head stays fp32: it reads the fp32 classifier weights directly.
    head = [n for n in graph.node if any(i.startswith("model.classifier.weight") for i in n.input)]
    assert head and all(n.op_type in ("Gemm", "MatMul") for n in head)
    fp32, int8 = probabilities(onnx_bundle, TEXTS), probabilities(quantized, TEXTS)
    assert (fp32.argmax(1) == int8.argmax(1)).all()
    np.testing.assert_allclose(int8, fp32, atol=0.05)


def test_int8_static_calibrates_activation_ranges(onnx_bundle, context):
    quantized = apply_technique("int8-static", onnx_bundle, context, calibration_texts=32)
    assert quantized.precision == "int8" and quantized.config["options"]["calibration_texts"] == 32
    ops = [node.op_type for node in onnx.load(quantized.path / "model.onnx").graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert quantized.metrics["agreement"] >= 0.95
    fp32, int8 = probabilities(onnx_bundle, TEXTS), probabilities(quantized, TEXTS)
    np.testing.assert_allclose(int8, fp32, atol=0.05)


@pytest.mark.parametrize("technique", ["emb4", "int4"])
def test_four_bit_weights_are_smaller_than_int8_and_close(technique, onnx_bundle, context):
    quantized = apply_technique(technique, onnx_bundle, context)
    assert quantized.files["model.onnx"]["bytes"] < 0.6 * onnx_bundle.files["model.onnx"]["bytes"]
    graph = onnx.load(quantized.path / "model.onnx").graph
    four_bit = {i.name: list(i.dims) for i in graph.initializer if i.name.endswith("_4bit")}
    word = next(i for i in onnx.load(onnx_bundle.path / "model.onnx").graph.initializer if "word" in i.name)
    assert four_bit[f"{word.name}_4bit"] == [word.dims[0], word.dims[1] // 2]  # two values a byte
    assert len(four_bit) == 2  # word and position embeddings
    ops = {node.op_type for node in graph.node}
    assert "GatherBlockQuantized" in ops and "QAttention" in ops  # 4-bit embeddings, int8 attention
    assert ("MatMulNBits" in ops) == (technique == "int4")
    with pytest.raises(FrugalError, match=re.escape(f"is {quantized.precision} already")):
        apply_technique("int8", quantized, context)
    assert quantized.metrics["agreement"] >= 0.95
    fp32, four = probabilities(onnx_bundle, TEXTS), probabilities(quantized, TEXTS)
    assert (fp32.argmax(1) == four.argmax(1)).all()
    np.testing.assert_allclose(four, fp32, atol=0.05)


def test_four_bit_embeddings_unfused_match_the_fused_layer_on_padded_batches(onnx_bundle, tmp_path):
    """The 4-bit gathers, sum, layer norm and mask index compute what ONNX Runtime's fused embedding
    layer computes from the same 4-bit tables, on a batch of texts of different lengths."""
    from frugalml.compress.checks import onnx_logits
    from frugalml.compress.int4 import dequantize_blocks, embedding_node, four_bit_embeddings, quantize_blocks
    from frugalml.models import load_bundle_tokenizer

    fused = onnx.load(onnx_bundle.path / "model.onnx")
    tables = set(embedding_node(fused).input[2:4])  # word and position embeddings
    for tensor in fused.graph.initializer:
        if tensor.name in tables:
            matrix = onnx.numpy_helper.to_array(tensor)
            tensor.CopyFrom(
                onnx.numpy_helper.from_array(dequantize_blocks(*quantize_blocks(matrix, 32), 32), tensor.name)
            )
    unfused = onnx.load(onnx_bundle.path / "model.onnx")
    four_bit_embeddings(unfused, 32)
    assert not [n for n in unfused.graph.node if n.op_type == "EmbedLayerNormalization"]
    onnx.save(fused, tmp_path / "fused.onnx")
    onnx.save(unfused, tmp_path / "unfused.onnx")
    tokenizer = load_bundle_tokenizer(onnx_bundle)
    texts = [*TEXTS, "a much longer message about a refund for a card that was stolen last week"]
    expected = onnx_logits(tmp_path / "fused.onnx", tokenizer, texts)
    np.testing.assert_allclose(onnx_logits(tmp_path / "unfused.onnx", tokenizer, texts), expected, atol=1e-4)


def test_four_bit_blocks_round_trip_within_half_a_step():
    from frugalml.compress.int4 import dequantize_blocks, quantize_blocks

    matrix = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    packed, scales = quantize_blocks(matrix, 32)
    assert packed.shape == (5, 32) and packed.dtype == np.uint8 and scales.shape == (5, 2)
    error = np.abs(dequantize_blocks(packed, scales, 32) - matrix).reshape(5, 2, 32)
    assert (error <= scales[..., None] / 2 + 1e-6).all()
    with pytest.raises(FrugalError, match="block size"):
        quantize_blocks(matrix, 48)


def test_a_candidate_that_crashes_is_listed_as_failed_and_the_others_still_build(tuned, context, monkeypatch):
    from frugalml.compress import workflow

    real = workflow.apply_technique

    def crashing_int8(name, source, context, **options):  # as ONNX Runtime's quantizer can
        if name == "int8":
            raise RuntimeError("Incomplete symbolic shape inference")
        return real(name, source, context, **options)

    monkeypatch.setattr(workflow, "apply_technique", crashing_int8)
    onnx, int8 = ("onnx", ()), ("int8", ())
    registered = []
    built, failed = workflow._build(
        [(onnx,), (onnx, int8)], tuned, context, CompressConfig(), register=registered.append
    )
    assert failed == [{"recipe": "onnx + int8", "error": "RuntimeError: Incomplete symbolic shape inference"}]
    assert built[(onnx,)].format == "onnx" and registered == [built[(onnx,)]]


def test_trim_keeps_only_corpus_tokens_and_identical_corpus_predictions(tuned, tmp_path):
    # A corpus of two intents: the lost-card words are not in it.
    rows = [r for r in make_rows(20, seed=1) if r[1] != "lost_card"]
    train = load_dataset(write_csv(tmp_path / "two.csv", rows))
    context = CompressContext(store=tmp_path / "bundles", train=train, teacher=tuned)
    trimmed = apply_technique("trim", tuned, context, words=-1)  # the corpus's tokens alone

    loaded = load_bundle(trimmed.path)
    model, tokenizer = load_torch(loaded)
    rows_kept = model.encoder.get_input_embeddings().weight.shape[0]
    assert rows_kept == trimmed.metrics["vocab_size"] < trimmed.metrics["vocab_size_before"]
    assert len(tokenizer.get_vocab()) == rows_kept and not (loaded.path / "vocab.txt").exists()
    # Identical predictions on the corpus (also checked before the bundle was written).
    np.testing.assert_allclose(
        probabilities(trimmed, train.texts), probabilities(tuned, train.texts), atol=1e-6
    )
    # A word outside the corpus maps to [UNK], never to an id past the embedding matrix.
    ids = AutoTokenizer.from_pretrained(loaded.path)("my card was stolen")["input_ids"]
    assert tokenizer.unk_token_id in ids and max(ids) < rows_kept
    assert probabilities(trimmed, ["my card was stolen"]).shape == (1, 3)


def test_trim_keeps_frequent_words_of_the_language_beyond_the_corpus(tuned, tmp_path):
    rows = [r for r in make_rows(20, seed=1) if r[1] != "lost_card"]
    context = CompressContext(
        store=tmp_path / "bundles", train=load_dataset(write_csv(tmp_path / "two.csv", rows)), teacher=tuned
    )
    narrow = apply_technique("trim", tuned, context, words=-1)
    wide = apply_technique("trim", tuned, context, words=2000)
    assert wide.metrics["vocab_size_corpus"] == narrow.metrics["vocab_size"] < wide.metrics["vocab_size"]
    assert wide.config["options"]["words"] == 2000
    # "card" and "lost" are among English's 2,000 most frequent words; the corpus never uses them.
    _, tokenizer = load_torch(load_bundle(wide.path))
    assert tokenizer.unk_token_id not in tokenizer("my card lost")["input_ids"]
    np.testing.assert_allclose(
        probabilities(wide, ["my card lost"]), probabilities(tuned, ["my card lost"]), atol=1e-6
    )


def test_trim_keeps_the_pieces_that_spell_any_word():
    from tokenizers import Tokenizer
    from transformers import BertTokenizerFast

    from frugalml.compress.vocab_trim import kept_token_ids, spelling_ids

    pieces = ["c", "a", "r", "d", "f", "u", "n", "e", "##c", "##a", "##r", "##d", "##f", "##u", "##n", "##e"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "refund", "card", "##ard", *pieces]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    assert {vocab[i] for i in spelling_ids(tokenizer)} == set(pieces)
    keep = kept_token_ids(tokenizer, ["refund"], words=0)
    assert "card" not in {vocab[i] for i in keep} and set(pieces) <= {vocab[i] for i in keep}
    spec = trimmed_tokenizer_spec(json.loads(tokenizer.backend_tokenizer.to_str()), keep)
    trimmed = Tokenizer.from_str(json.dumps(spec))
    # A word the corpus never used is spelled in kept pieces instead of becoming [UNK].
    assert trimmed.encode("card", add_special_tokens=False).tokens == ["c", "##a", "##r", "##d"]
    assert trimmed.encode("refund", add_special_tokens=False).tokens == ["refund"]
    assert kept_token_ids(tokenizer, ["refund"], words=-1) == [0, 1, 2, 3, 4, 5]  # corpus only


def test_trim_refuses_tokenizers_it_cannot_rewrite():
    with pytest.raises(FrugalError, match="WordPiece"):
        trimmed_tokenizer_spec({"model": {"type": "BPE", "vocab": {}}}, [0])


def test_prune_drops_layers_and_zeroes_weak_heads_and_neurons(tuned, context):
    pruned = apply_technique("prune", tuned, context, layers=1, heads=0.5, ffn=0.5)
    model, _ = load_torch(load_bundle(pruned.path))
    assert model.config.encoder["num_hidden_layers"] == 1 and len(model.encoder.encoder.layer) == 1
    layer = model.encoder.encoder.layer[0]
    assert len(live_heads(layer)) == 1 and len(live_neurons(layer)) == 32
    assert pruned.metrics["parameters"] < pruned.metrics["parameters_before"]

    # Slicing the zeroed structure out gives smaller dense kernels and the same function.
    sliced = remove_masked_structure(model)
    small = sliced.encoder.encoder.layer[0]
    assert small.attention.self.query.out_features == 16 and small.intermediate.dense.out_features == 32
    batch = {
        "input_ids": torch.tensor([[2, 7, 9, 11, 3]]),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
    }
    with torch.no_grad():
        torch.testing.assert_close(sliced(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-5)
    # ...and the ONNX export of the pruned model is the sliced one.
    exported = apply_technique("onnx", pruned, context)
    weights = {i.name: list(i.dims) for i in onnx.load(exported.path / "model.onnx").graph.initializer}
    assert any(dims == [32, 16 * 3] or dims == [32, 16] for dims in weights.values())
    np.testing.assert_allclose(probabilities(exported, TEXTS), probabilities(pruned, TEXTS), atol=1e-5)


def test_importance_scores_and_layer_choice_are_plain_functions():
    context = np.ones((4, 4))
    weight = np.concatenate([np.ones((3, 2)), np.zeros((3, 2))], axis=1)  # head 1 writes nothing
    scores = head_scores(context, weight, n_heads=2)
    assert scores[1] == 0 and scores[0] > 0
    activations = np.array([[1.0, 0.0, -2.0], [1.0, 0.0, 2.0]])
    assert neuron_scores(activations, np.ones((2, 3))).tolist() == pytest.approx([2 * 2**0.5, 0, 4 * 2**0.5])
    assert keep_top(np.array([0.1, 0.9, 0.5, 0.7]), 0.5).tolist() == [1, 3]
    assert keep_top(np.array([0.1, 0.9]), 0.01).tolist() == [1]  # never below one
    assert layer_indices(6, 3) == [0, 2, 5] and layer_indices(6, 1) == [0] and layer_indices(2, 2) == [0, 1]
    with pytest.raises(FrugalError):
        layer_indices(6, 7)


def test_distillation_recovers_the_teacher_and_keeps_pruned_blocks_at_zero(tuned, context):
    pruned = apply_technique("prune", tuned, context, layers=1, ffn=0.5)
    student = apply_technique("distill", pruned, context, epochs=4, lr=5e-3)
    assert student.parents == [pruned.id] and student.config["techniques"] == ["prune", "distill"]
    assert student.metrics["teacher_agreement"] >= 0.95
    assert student.metrics["distill_texts"] > len(context.train)  # labelled + perturbed copies
    model, _ = load_torch(load_bundle(student.path))
    assert len(live_neurons(model.encoder.encoder.layer[0])) == 32  # still pruned


def test_augment_is_seeded_and_uses_only_corpus_words():
    texts = ["refund my money now", "card lost please help me", "reset my password today please"]
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    first, second = augment(texts, 2, rng_a), augment(texts, 2, rng_b)
    assert first == second and 0 < len(first) <= 6
    vocabulary = {w for t in texts for w in t.split()}
    assert all(set(t.split()) <= vocabulary for t in first)


def test_splices_join_a_texts_start_to_the_end_of_a_text_of_its_own_label():
    texts = ["refund my money now", "give my money back", "card lost please help", "my card is gone"]
    labels = ["refund", "refund", "card", "card"]
    spliced = augment(texts, 50, np.random.default_rng(0), splice=1.0, groups=labels)
    assert len(spliced) == 200 and spliced != texts * 50
    for i, text in enumerate(spliced):
        own = texts[i % 4].split()
        words = text.split()
        cut = max(k for k in range(1, len(own) + 1) if words[:k] == own[:k])  # starts with its own words
        rest = " ".join(words[cut:])
        same = [t for t, y in zip(texts, labels, strict=True) if y == labels[i % 4]]
        assert any(t.endswith(rest) for t in same), text
    # Without groups the other half may come from any text: some splices cross the labels.
    crossed = augment(texts, 50, np.random.default_rng(0), splice=1.0)
    assert any(t.startswith("refund") and t.endswith(("help", "gone")) for t in crossed)


def test_distillation_loss_is_ce_at_alpha_one_and_zero_when_student_is_teacher():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, -1])  # the second row has no label
    expected = torch.nn.functional.cross_entropy(logits[:1], labels[:1])
    assert distillation_loss(logits, logits.log_softmax(-1), labels, 2.0, 1.0).item() == pytest.approx(
        expected.item()
    )
    unlabelled = torch.tensor([-1, -1])
    assert distillation_loss(logits, logits, unlabelled, 2.0, 0.5).item() == pytest.approx(0, abs=1e-6)


def test_recipes_follow_the_enabled_techniques():
    assert recipes(["onnx", "int8"], "torch") == [(step("onnx"),), (step("onnx"), step("int8"))]
    every = recipes(["onnx", "int8", "int8-static", "trim", "prune", "distill"], "torch", layers=(3,))
    described = [describe(r) for r in every]
    assert "prune(layers=3) + trim + distill + onnx + int8" in described
    assert "trim + onnx + int8-static" in described and "prune(layers=3) + trim + distill" in described
    assert len(described) == len(set(described)) == 11
    assert [describe(r) for r in recipes(["prune", "onnx"], "torch", layers=(1,), ffn=(0.5,))] == [
        "onnx",
        "prune(ffn=0.5,layers=1)",
        "prune(ffn=0.5,layers=1) + onnx",
    ]
    # An ONNX bundle can only be quantized further.
    assert recipes(["onnx", "int8", "trim"], "onnx") == [(step("int8"),)]


def test_pareto_front_and_budget_selection():
    accuracy = [0.930, 0.931, 0.925, 0.918, 0.925]
    size = [90e6, 23e6, 8e6, 5e6, 9e6]
    latency = [9.0, 5.0, 3.0, 2.5, 3.5]
    # The last point is dominated by the third (same accuracy, bigger and slower).
    assert pareto_mask(accuracy, size, latency).tolist() == [False, True, True, True, False]
    # 1 point of budget from 0.930: 0.918 is out, 0.925 is the smallest within.
    assert select_candidate(accuracy, size, latency, 0.930, 1.0) == 2
    assert select_candidate(accuracy, size, latency, 0.930, 1.2) == 3  # the budget edge counts as within
    assert select_candidate(accuracy, size, latency, 0.935, 0.0) is None
    # Equal sizes: the faster one.
    assert select_candidate([0.9, 0.9], [5, 5], [2.0, 1.0], 0.9, 1.0) == 1


def test_corrupted_onnx_bundles_are_refused_with_a_clear_error(onnx_bundle, context, tmp_path):
    # Bytes changed after writing: the hash check refuses the bundle.
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(onnx_bundle.path, copy)
    with (copy / "model.onnx").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00garbage\x00")
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(copy)

    # A bundle whose model.onnx was never a valid graph (hashes match what was written).
    def populate(folder):
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(onnx_bundle.path / name, folder / name)
        (folder / "model.onnx").write_bytes(b"this is not an onnx graph")

    broken = write_bundle(
        tmp_path / "store",
        Bundle(
            id=new_bundle_id(),
            name="broken",
            labels=onnx_bundle.labels,
            base_model="x",
            method="full",
            format="onnx",
        ),
        populate,
    )
    with pytest.raises(BundleError, match=r"model.onnx cannot be loaded"):
        load_predictor(load_bundle(broken.path))
    with pytest.raises(BundleError, match="not a loadable ONNX model"):
        apply_technique("int8", broken, context)


def test_techniques_refuse_unknown_names_and_wrong_formats(tuned, onnx_bundle, context):
    with pytest.raises(FrugalError, match="unknown technique"):
        apply_technique("sparsify", tuned, context)
    with pytest.raises(FrugalError, match="reads onnx bundles"):
        apply_technique("int8", tuned, context)
    with pytest.raises(FrugalError, match="reads torch bundles"):
        apply_technique("trim", onnx_bundle, context)


def test_context_corpus_is_training_then_unlabelled_text(tuned, tmp_path):
    train = Dataset(texts=["a b", "c d"], labels=["refund", "password"], ids=["1", "2"])
    context = CompressContext(store=tmp_path, train=train, teacher=tuned, unlabelled=["e f"])
    assert context.corpus == ["a b", "c d", "e f"]


def test_distillation_transfer_set_adds_unlabelled_and_perturbed_texts_and_layer_states(tuned, tmp_path):
    from frugalml.compress.distill import layer_loss

    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(5, seed=2)))
    pool = [text for text, _ in make_rows(4, seed=3)]
    context = CompressContext(store=tmp_path / "bundles", train=train, teacher=tuned, unlabelled=pool)
    pruned = apply_technique("prune", tuned, context, layers=1)
    student = apply_technique("distill", pruned, context, epochs=1, augment_copies=2)
    # 15 labelled, 12 unlabelled, up to 2 perturbed or spliced copies of each labelled text.
    assert len(train) + len(pool) < student.metrics["distill_texts"] <= 3 * len(train) + len(pool)
    assert student.metrics["layer_distillation"] and student.config["options"]["unlabelled"] == 12
    plain = apply_technique("distill", pruned, context, epochs=1, hidden=0.0)
    assert not plain.metrics["layer_distillation"]
    states = torch.randn(4, 1, 8)
    assert layer_loss([states[:, 0]], states).item() == pytest.approx(0, abs=1e-6)
    assert layer_loss([-states[:, 0]], states).item() == pytest.approx(2, abs=1e-6)


def test_the_teacher_labels_a_transfer_set_once_for_every_student(tuned, tmp_path):
    from frugalml.compress.distill import teacher_log_probs, teacher_targets

    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(5, seed=2)))
    context = CompressContext(store=tmp_path / "bundles", train=train, teacher=tuned)
    found = teacher_targets(context, train.texts, 1, torch.device("cpu"), hidden=1.0)
    # One pass gives the predictor's log-probabilities and the chosen layer's states.
    np.testing.assert_allclose(found.log_probs, teacher_log_probs(tuned, train.texts), atol=1e-4)
    assert found.states is not None and found.states.shape[:2] == (len(train), 1)
    assert found.projections is None  # asked for with attention > 0 only
    for layers in (1, 2):
        pruned = apply_technique("prune", tuned, context, layers=layers)
        apply_technique("distill", pruned, context, epochs=1)
    assert len(context.teacher_outputs) == 2  # the texts above, and the one transfer set


def test_attention_relations_are_distilled_from_the_teachers_last_layer(tuned, tmp_path):
    from frugalml.compress.distill import teacher_targets

    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(5, seed=2)))
    context = CompressContext(store=tmp_path / "bundles", train=train, teacher=tuned)
    found = teacher_targets(context, train.texts, 1, torch.device("cpu"), hidden=0.0, attention=1.0)
    # Per text its own tokens' queries, keys and values ([CLS] and [SEP] included).
    assert found.states is None and found.projections is not None and found.heads == 2
    words = [len(text.split()) + 2 for text in train.texts]  # the tiny vocabulary is word-level
    assert [p.shape for p in found.projections] == [(n, 3, 32) for n in words]
    pruned = apply_technique("prune", tuned, context, layers=1)
    student = apply_technique("distill", pruned, context, epochs=1, hidden=0.0, attention=1.0)
    assert student.metrics["attention_distillation"] and not student.metrics["layer_distillation"]
    assert student.config["options"]["attention"] == 1.0
    plain = apply_technique("distill", pruned, context, epochs=1, hidden=0.0)
    assert not plain.metrics["attention_distillation"]
    # The relations moved the student: its weights differ from the logits-only student's.
    a, b = load_torch(student)[0].state_dict(), load_torch(plain)[0].state_dict()
    assert any(not torch.equal(a[name], b[name]) for name in a)


def test_relation_loss_is_zero_for_equal_relations_and_skips_rows_of_other_tokens():
    from frugalml.compress.relations import padded_projections, relation_loss

    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 3, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert relation_loss(teacher, teacher, mask, heads=2).item() == pytest.approx(0, abs=1e-6)
    # Scaling a projection changes its relations (sharper softmax), a width of 16 still splits.
    assert relation_loss(3 * teacher, teacher, mask, heads=2).item() > 0.01
    assert relation_loss(torch.randn(2, 5, 3, 16), teacher, mask, heads=2).item() > 0.01
    # Padded keys and queries do not count: what lies under the mask's zeros changes nothing.
    noisy = teacher.clone()
    noisy[0, 4] = torch.randn(3, 8)
    assert relation_loss(noisy, teacher, mask, heads=2).item() == pytest.approx(0, abs=1e-6)
    # A text the student tokenizes into other tokens (trimmed vocabulary) is left out.
    kept = [teacher[0, :4], teacher[1, :3]]  # the second text had 3 teacher tokens, 5 student ones
    padded, same = padded_projections(kept, [0, 1], mask)
    assert same.tolist() == [[1, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    assert torch.equal(padded[0, :4], teacher[0, :4]) and not padded[1].any()
