"""Load a bundle's config, tokenizer and classifier: only its listed files, never its code.

Every frugalml reader of a bundle's Hugging Face files goes through these functions, so these rules
hold on every path (predictors, compression techniques, labelling with a bundle):
- the folder holds only files the manifest lists (`require_only_listed_files`), so nothing
  unhashed is picked up by name (added_tokens.json, special_tokens_map.json, ...);
- no code from the bundle runs: frugalml's own classes build the model, one of transformers'
  tokenizer classes the tokenizer (`trust_remote_code=False`), and a config that asks for other
  code (an `auto_map`, an unknown class or model type) is refused.
Each refusal is a BundleError of one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

from frugalml.bundle import Bundle, require_only_listed_files
from frugalml.errors import BundleError, first_line
from frugalml.models.hf_model import FrugalTextClassifier, FrugalTextClassifierConfig

# The auto_map that every PyTorch bundle's config.json carries: it points at the copy of
# hf_model.py for users outside frugalml; frugalml itself never follows it.
OWN_AUTO_MAP = {
    "AutoConfig": "hf_model.FrugalTextClassifierConfig",
    "AutoModelForSequenceClassification": "hf_model.FrugalTextClassifier",
}


def load_bundle_config(bundle: Bundle) -> FrugalTextClassifierConfig:
    """The classifier config of a bundle; refused if it asks for code other than frugalml's."""
    folder = _listed_folder(bundle)
    settings = _read_json(bundle, "config.json")
    if settings.get("model_type") != FrugalTextClassifierConfig.model_type:
        raise BundleError(
            f"bundle {bundle.id}: config.json has model_type {settings.get('model_type')!r}, "
            f"not {FrugalTextClassifierConfig.model_type!r}"
        )
    if settings.get("auto_map", OWN_AUTO_MAP) != OWN_AUTO_MAP:
        raise _custom_code(bundle, "config.json", "an auto_map other than frugalml's own")
    encoder = settings.get("encoder")
    if not isinstance(encoder, dict) or encoder.get("model_type") not in CONFIG_MAPPING_NAMES:
        kind = encoder.get("model_type") if isinstance(encoder, dict) else None
        raise _custom_code(bundle, "config.json", f"encoder model_type {kind!r}, not one transformers has")
    if "auto_map" in encoder:
        raise _custom_code(bundle, "config.json", "an auto_map for the encoder")
    try:
        return FrugalTextClassifierConfig.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"bundle {bundle.id}: config.json cannot be read ({first_line(exc)})") from None


def load_bundle_tokenizer(bundle: Bundle) -> PreTrainedTokenizerBase:
    """The bundle's tokenizer, built by one of transformers' tokenizer classes."""
    folder = _listed_folder(bundle)
    check_tokenizer_class(bundle, _read_json(bundle, "tokenizer_config.json"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"bundle {bundle.id}: its tokenizer cannot be loaded ({first_line(exc)})") from None
    return tokenizer


def load_bundle_model(
    bundle: Bundle, config: FrugalTextClassifierConfig | None = None
) -> FrugalTextClassifier:
    """The classifier of a PyTorch bundle, in eval mode, from its safetensors weights only."""
    folder = _listed_folder(bundle)
    config = config or load_bundle_config(bundle)
    try:
        model = FrugalTextClassifier.from_pretrained(folder, config=config, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:  # missing weights, shapes unlike the config
        raise BundleError(f"bundle {bundle.id}: its model cannot be loaded ({first_line(exc)})") from None
    return model.eval()


def load_bundle_torch(bundle: Bundle) -> tuple[FrugalTextClassifier, PreTrainedTokenizerBase]:
    """The classifier and tokenizer of a PyTorch bundle (the model in eval mode)."""
    config = load_bundle_config(bundle)
    return load_bundle_model(bundle, config), load_bundle_tokenizer(bundle)


def check_tokenizer_class(bundle: Bundle, settings: dict[str, Any]) -> None:
    """Refuse a tokenizer_config.json that asks for code: an auto_map, or a tokenizer_class that
    is not one of transformers' own tokenizers."""
    if "auto_map" in settings:
        raise _custom_code(bundle, "tokenizer_config.json", "an auto_map")
    name = settings.get("tokenizer_class")
    found = tokenizer_class_from_name(name) if isinstance(name, str) else None
    if not (
        isinstance(found, type)
        and issubclass(found, PreTrainedTokenizerBase)
        and found.__module__.startswith("transformers.")
    ):
        what = f"tokenizer_class {name!r}, not a transformers tokenizer"
        raise _custom_code(bundle, "tokenizer_config.json", what)


def _listed_folder(bundle: Bundle) -> Path:
    if bundle.path is None:
        raise BundleError(f"bundle {bundle.id} has no folder")
    require_only_listed_files(bundle)  # a listing only: cheap enough for every load
    return bundle.path


def _read_json(bundle: Bundle, name: str) -> dict[str, Any]:
    assert bundle.path is not None
    try:
        data = json.loads((bundle.path / name).read_text())
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle.id} has no {name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {bundle.id}: {name} is malformed ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"bundle {bundle.id}: {name} is malformed (not a JSON object)")
    return data


def _custom_code(bundle: Bundle, name: str, what: str) -> BundleError:
    return BundleError(
        f"bundle {bundle.id}: {name} asks for code frugalml does not run ({what}); "
        "frugalml loads bundles only with its own and transformers' classes"
    )
