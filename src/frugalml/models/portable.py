"""Leave frugalml with a standard model: export a PyTorch bundle to a folder other tools load.

frugalml's classifier mean-pools the encoder's token states, L2-normalizes them and applies a
linear head. No transformers `...ForSequenceClassification` class pools that way (BERT's uses the
[CLS] token through a tanh layer), so a plain `AutoModelForSequenceClassification` cannot hold the
model without remote code. The formats (`WRITERS`):

- `sentence-transformers` (the default): the sentence-transformers layout, which expresses the
  model with standard modules only: `0_Transformer` (a plain transformers encoder folder, loadable
  with `AutoModel`, label names in its config's id2label), `1_Pooling` (mean), `2_Normalize`, and
  `3_Dense` (the head: a Linear with no activation, weights in safetensors). `encode` returns one
  logit per label; `SentenceTransformer(folder)` loads it with `trust_remote_code=False`. A PEFT
  bundle's adapter is re-expressed on the plain encoder (FEATURE_EXTRACTION), so
  `AutoPeftModelForFeatureExtraction` loads it on the base its config names.
- `hf`: the bundle's transformers folder with frugalml's classifier code beside it (`hf_model.py`,
  torch and transformers only): `pipeline("text-classification", ..., trust_remote_code=True)`.

Both carry a model card (README.md), name the base by a portable name (a hub id where one is known,
never a path of the machine that built the bundle), and are written to a temporary folder that is
renamed into place, so a failed export leaves nothing under the output name.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from frugalml.bundle import Bundle
from frugalml.errors import FrugalError
from frugalml.models.base import hub_base_name
from frugalml.models.batching import usable_length
from frugalml.models.card import model_card
from frugalml.models.hf_model import FrugalTextClassifier
from frugalml.models.loading import load_bundle_torch

if TYPE_CHECKING:
    from frugalml.lineage import LineageStore

TRANSFORMER = "0_Transformer"
DENSE = "3_Dense"
ADAPTER = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# sentence-transformers' classic module names: every release from 2.x to today loads them.
ST_MODULE = "sentence_transformers.models."
IDENTITY = "torch.nn.modules.linear.Identity"
TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".txt", ".md", ".py")  # scanned for machine paths
# An export is checked on these before it is renamed into place.
PROBE_TEXTS = ("how do I reset my password", "refund please", "my card was stolen yesterday, block it now")
MAX_ABS_DIFF = 1e-4  # the same float32 operations, in another order at most


@dataclass(frozen=True)
class ExportResult:
    """What `frugalml models export --json` prints."""

    bundle_id: str
    format: str
    path: str
    base_model: str
    files: list[str]
    size_bytes: int
    max_abs_diff: float  # between the export's logits and the bundle's on probe texts

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_bundle(
    bundle: Bundle, output: str | Path, format: str = "sentence-transformers", *, data_sha256: str = ""
) -> ExportResult:
    """Write PyTorch `bundle` as a standard model folder at `output` (absent or empty).

    `data_sha256` is the training data hash for the model card (default: the bundle's own record).
    """
    writer = WRITERS.get(format)
    if writer is None:
        raise FrugalError(f"unknown export format {format!r}: choose one of {', '.join(WRITERS)}")
    if bundle.format != "torch" or bundle.path is None:
        raise FrugalError(
            f"bundle {bundle.id} is a {bundle.format} bundle; export works on PyTorch bundles "
            f"(its ONNX files are already standard: model.onnx, config.json, tokenizer files)"
        )
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FrugalError(f"{output} already exists and is not an empty folder")
    model, tokenizer = load_bundle_torch(bundle)
    if model.config.prompt_length or model.config.prefix_length or model.config.bottleneck_adapter:
        raise FrugalError(
            f"bundle {bundle.id} was tuned with --method {bundle.method}, whose weights a plain "
            "encoder folder cannot carry; use the bundle itself (its folder loads in transformers "
            "with trust_remote_code=True)"
        )
    base = hub_base_name(bundle.base_model)
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.parent / f".partial-{output.name}-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        reference = _logits(model, tokenizer)
        writer(bundle, model, tokenizer, base, temp)
        difference = float((CHECKS[format](temp) - reference).abs().max())
        if not difference <= MAX_ABS_DIFF:
            raise FrugalError(
                f"the exported model does not reproduce the bundle (max logit difference {difference:.2g})"
            )
        card = model_card(
            bundle,
            format,
            base,
            data_sha256=data_sha256 or bundle.config.get("data_sha256", ""),
            normalize=bool(model.config.normalize),
            has_adapter=(temp / ADAPTER).is_dir(),
            path=output.name,
        )
        (temp / "README.md").write_text(card)
        leaks = find_machine_paths(temp, [bundle.path])
        if leaks:
            raise FrugalError(f"the export would carry a path of this machine: {leaks[0]}")
        if output.exists():
            output.rmdir()
        os.rename(temp, output)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    files = sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file())
    return ExportResult(
        bundle_id=bundle.id,
        format=format,
        path=str(output),
        base_model=base,
        files=files,
        size_bytes=sum((output / f).stat().st_size for f in files),
        max_abs_diff=difference,
    )


def training_data_sha256(bundle: Bundle, lineage: LineageStore | None = None) -> str:
    """The hash of the data `bundle` was trained on: its own record, else (a compressed bundle) that
    of its nearest ancestor in the lineage store; "" when neither knows."""
    own = str(bundle.config.get("data_sha256") or "")
    if own or lineage is None:
        return own
    try:
        chain = lineage.lineage(bundle.id)
    except FrugalError:  # a bundle folder the store does not know
        return ""
    return next((str(row["data_sha256"]) for row in chain if row.get("data_sha256")), "")


def write_sentence_transformers(
    bundle: Bundle, model: FrugalTextClassifier, tokenizer: PreTrainedTokenizerBase, base: str, folder: Path
) -> None:
    """The sentence-transformers layout: Transformer, mean Pooling, Normalize, Dense head."""
    encoder = model.encoder
    encoder.config.name_or_path = base
    # Label names where transformers keeps them (config.id2label), as in the bundle.
    encoder.config.id2label = dict(enumerate(bundle.labels))
    encoder.config.label2id = {label: i for i, label in enumerate(bundle.labels)}
    restore_pooler(encoder)
    encoder.save_pretrained(folder / TRANSFORMER)
    tokenizer.save_pretrained(folder / TRANSFORMER)
    length = usable_length(None, tokenizer, model.config.encoder)
    _write_json(
        folder / TRANSFORMER / "sentence_bert_config.json", {"max_seq_length": length, "do_lower_case": False}
    )
    hidden = int(encoder.config.hidden_size)
    pooling = {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    _write_json(folder / "1_Pooling" / "config.json", pooling)
    modules = [(TRANSFORMER, "Transformer"), ("1_Pooling", "Pooling")]
    if model.config.normalize:
        _write_json(folder / "2_Normalize" / "config.json", {})  # a file keeps the folder in git and hubs
        modules.append(("2_Normalize", "Normalize"))
    head = model.classifier
    dense = {
        "in_features": hidden,
        "out_features": int(head.out_features),
        "bias": True,
        "activation_function": IDENTITY,
    }
    _write_json(folder / DENSE / "config.json", dense)
    weights = {
        "linear.weight": head.weight.detach().contiguous(),
        "linear.bias": head.bias.detach().contiguous(),
    }
    save_file(weights, str(folder / DENSE / "model.safetensors"), metadata={"format": "pt"})
    modules.append((DENSE, "Dense"))
    listing = [
        {"idx": i, "name": str(i), "path": path, "type": ST_MODULE + kind}
        for i, (path, kind) in enumerate(modules)
    ]
    _write_json(folder / "modules.json", listing)
    _write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": None},
    )
    adapter = bundle_adapter(bundle)
    if adapter is not None:
        encoder_adapter(adapter, folder / ADAPTER, base)


def restore_pooler(encoder: Any) -> None:
    """Give an encoder whose pooler the classifier dropped a zero one, in place.

    The classifier pools by the mean and drops the [CLS] pooler its architecture has; `AutoModel`
    builds that pooler anyway and reports its weights as missing and randomly initialized. Zeros
    load silently and say what the pooler is here: unused.
    """
    if getattr(encoder, "pooler", ...) is not None:  # no pooler in this architecture, or kept
        return
    with torch.device("meta"):
        skeleton = AutoModel.from_config(encoder.config, trust_remote_code=False)
    pooler = getattr(skeleton, "pooler", None)
    if pooler is None:
        return
    encoder.pooler = pooler.to_empty(device="cpu")
    for param in encoder.pooler.parameters():
        torch.nn.init.zeros_(param)


def write_hf(
    bundle: Bundle, model: FrugalTextClassifier, tokenizer: PreTrainedTokenizerBase, base: str, folder: Path
) -> None:
    """The transformers folder with frugalml's classifier code (`hf_model.py`) and its auto_map."""
    model.config.encoder = {**model.config.encoder, "_name_or_path": base}
    model.config.name_or_path = base
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    adapter = bundle_adapter(bundle)
    if adapter is not None:
        (folder / ADAPTER).mkdir()
        shutil.copy(adapter / ADAPTER_WEIGHTS, folder / ADAPTER / ADAPTER_WEIGHTS)
        config = _read_json(adapter / ADAPTER_CONFIG)
        _write_json(folder / ADAPTER / ADAPTER_CONFIG, {**config, "base_model_name_or_path": base})


def sentence_transformers_logits(folder: Path) -> torch.Tensor:
    """Logits of the probe texts from a sentence-transformers export, computed as its modules
    describe (transformers' AutoModel, mean pooling, normalize, Linear), with no frugalml class."""
    encoder = AutoModel.from_pretrained(folder / TRANSFORMER, trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / TRANSFORMER, trust_remote_code=False)
    length = _read_json(folder / TRANSFORMER / "sentence_bert_config.json")["max_seq_length"]
    batch = tokenizer(
        list(PROBE_TEXTS), padding=True, truncation=True, max_length=length, return_tensors="pt"
    )
    with torch.no_grad():
        states = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if (folder / "2_Normalize").is_dir():
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    head = load_file(str(folder / DENSE / "model.safetensors"))
    return pooled @ head["linear.weight"].T + head["linear.bias"]


def hf_logits(folder: Path) -> torch.Tensor:
    """Logits of the probe texts from an `hf` export, read with frugalml's own classes."""
    model = FrugalTextClassifier.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return _logits(model, tokenizer)


def _logits(model: FrugalTextClassifier, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    batch = tokenizer(list(PROBE_TEXTS), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


WRITERS: dict[str, Callable[[Bundle, FrugalTextClassifier, PreTrainedTokenizerBase, str, Path], None]] = {
    "sentence-transformers": write_sentence_transformers,
    "hf": write_hf,
}
CHECKS: dict[str, Callable[[Path], torch.Tensor]] = {
    "sentence-transformers": sentence_transformers_logits,
    "hf": hf_logits,
}


def bundle_adapter(bundle: Bundle) -> Path | None:
    """The folder of the bundle's PEFT adapter, if it has one (its files are listed and hashed)."""
    assert bundle.path is not None
    listed = f"{ADAPTER}/{ADAPTER_CONFIG}" in bundle.files and f"{ADAPTER}/{ADAPTER_WEIGHTS}" in bundle.files
    return bundle.path / ADAPTER if listed else None


def encoder_adapter(source: Path, target: Path, base: str) -> None:
    """Re-express a bundle's adapter (SEQ_CLS on frugalml's classifier, head saved whole) as an
    adapter on the plain encoder (FEATURE_EXTRACTION), the model `AutoModel` builds from `base`.

    Module names lose the classifier's `encoder.` prefix; the head's copy is dropped (the export
    holds the head on its own). The adapter weights are unchanged.
    """
    config = _read_json(source / ADAPTER_CONFIG)
    prefix = FrugalTextClassifier.base_model_prefix + "."

    def on_encoder(names: Any, key: str) -> Any:
        if names is None:
            return None
        if not isinstance(names, list):  # a regex over the classifier's module names
            raise FrugalError(
                f"the adapter's {key} is a pattern ({names!r}); only name lists can be re-expressed"
            )
        return sorted({name.removeprefix(prefix) for name in names})

    config.update(
        task_type="FEATURE_EXTRACTION",
        base_model_name_or_path=base,
        modules_to_save=None,
        target_modules=on_encoder(config.get("target_modules"), "target_modules"),
    )
    if "feedforward_modules" in config:  # IA3
        config["feedforward_modules"] = on_encoder(config["feedforward_modules"], "feedforward_modules")
    tensors = load_file(str(source / ADAPTER_WEIGHTS))
    root = "base_model.model."
    encoder_keys = root + prefix
    head_keys = root + "classifier."
    other = [key for key in tensors if not key.startswith((encoder_keys, head_keys))]
    if other:
        raise FrugalError(
            f"the adapter holds weights outside the encoder and head ({other[0]}); not exported"
        )
    kept = {
        root + key.removeprefix(encoder_keys): value
        for key, value in tensors.items()
        if key.startswith(encoder_keys)
    }
    target.mkdir(parents=True)
    save_file(kept, str(target / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    _write_json(target / ADAPTER_CONFIG, config)


def machine_paths(extra: Iterable[Path | str | None] = ()) -> list[str]:
    """Folders of this machine that must not appear in a portable file: home, the Python
    installation and its site-packages, the working folder, and `extra`."""
    candidates = [Path.home(), sys.prefix, sys.base_prefix, *site.getsitepackages(), Path.cwd(), *extra]
    found = {str(Path(c).resolve()) for c in candidates if c is not None}
    return sorted(p for p in found if len(Path(p).parts) > 1)  # never "/" itself


def find_machine_paths(folder: Path, extra: Iterable[Path | str | None] = ()) -> list[str]:
    """`file: path` for each text file under `folder` that names one of `machine_paths(extra)`."""
    needles = machine_paths(extra)
    found = []
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix in TEXT_SUFFIXES:
            text = file.read_text(errors="replace")
            found += [f"{file.relative_to(folder)}: {needle}" for needle in needles if needle in text]
    return found


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise FrugalError(f"{path.name} is not a JSON object")
    return data


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
