"""Load a bundle's config, tokenizer and classifier: only its listed files, never its code.

Every frugalml reader of a bundle's Hugging Face files goes through these functions, so these rules
hold on every path (predictors, compression techniques, labelling with a bundle):
- the folder holds only files the manifest lists (`require_only_listed_files`), so nothing
  unhashed is picked up by name (added_tokens.json, special_tokens_map.json, ...);
- no code from the bundle runs: frugalml's own classes build the model, one of transformers'
  tokenizer classes the tokenizer (`trust_remote_code=False`), and a config that asks for other
  code (an `auto_map`, an unknown class or model type) is refused;
- the tokenizer produces no token id the model has no embedding for, and its special tokens are
  distinct entries of its vocabulary, so a bundle that loads can answer every text.
Each refusal is a BundleError of one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

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
# Roles whose tokens must be distinct vocabulary entries (a tokenizer may leave some unset).
SPECIAL_ROLES = ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token")
PROBE_TEXT = "a probe text"  # tokenized at load: ids the post-processor adds must fit too


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


def load_bundle_tokenizer(
    bundle: Bundle, config: FrugalTextClassifierConfig | None = None
) -> PreTrainedTokenizerBase:
    """The bundle's tokenizer, built by a transformers class; checked against the model's
    embedding count (the encoder's vocab_size in `config`, read from the bundle if not given)."""
    folder = _listed_folder(bundle)
    check_tokenizer_class(bundle, _read_json(bundle, "tokenizer_config.json"))
    config = config or load_bundle_config(bundle)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"bundle {bundle.id}: its tokenizer cannot be loaded ({first_line(exc)})") from None
    check_token_ids(bundle, tokenizer, int(config.encoder.get("vocab_size") or 0))
    return tokenizer


def load_bundle_model(
    bundle: Bundle, config: FrugalTextClassifierConfig | None = None
) -> FrugalTextClassifier:
    """The classifier of a PyTorch bundle, in eval mode, from its safetensors weights only."""
    folder = _listed_folder(bundle)
    config = config or load_bundle_config(bundle)
    try:
        # With output_loading_info, from_pretrained returns (model, info); its stubs say model only.
        model, info = cast(
            tuple[FrugalTextClassifier, dict[str, Any]],
            FrugalTextClassifier.from_pretrained(
                folder, config=config, use_safetensors=True, output_loading_info=True
            ),
        )
    except (OSError, ValueError, RuntimeError) as exc:  # missing weights, shapes unlike the config
        raise BundleError(f"bundle {bundle.id}: its model cannot be loaded ({first_line(exc)})") from None
    if info["missing_keys"]:  # transformers would fill them with random values
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise BundleError(f"bundle {bundle.id}: model.safetensors lacks weights ({missing})")
    return model.eval()


def load_bundle_torch(bundle: Bundle) -> tuple[FrugalTextClassifier, PreTrainedTokenizerBase]:
    """The classifier and tokenizer of a PyTorch bundle (the model in eval mode)."""
    config = load_bundle_config(bundle)
    tokenizer = load_bundle_tokenizer(bundle, config)
    model = load_bundle_model(bundle, config)
    # The tokenizer was checked against the config; this checks the matrix inference indexes.
    embeddings: Any = model.get_input_embeddings()  # an nn.Embedding; typed as nn.Module
    check_token_ids(bundle, tokenizer, embeddings.num_embeddings)
    return model, tokenizer


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


def check_token_ids(bundle: Bundle, tokenizer: PreTrainedTokenizerBase, embeddings: int) -> None:
    """Refuse a tokenizer that can produce an id at or past `embeddings` (the model's rows), or
    whose special tokens are missing from its vocabulary or shared between roles."""
    vocab = tokenizer.get_vocab()  # added tokens included
    highest = highest_token_id(tokenizer)
    if highest >= embeddings:
        raise BundleError(
            f"bundle {bundle.id}: its tokenizer produces token ids up to {highest}, but the model "
            f"embeds only ids 0-{embeddings - 1} (added tokens must fit the model)"
        )
    if tokenizer.pad_token is None:
        raise BundleError(f"bundle {bundle.id}: its tokenizer has no pad_token")
    roles: dict[str, list[str]] = {}
    for role in SPECIAL_ROLES:
        token = getattr(tokenizer, role)
        if token is None:
            continue
        if str(token) not in vocab:
            raise BundleError(f"bundle {bundle.id}: its {role} {str(token)!r} is not in its vocabulary")
        roles.setdefault(str(token), []).append(role)
    shared = {token: names for token, names in roles.items() if len(names) > 1}
    if shared:
        token, names = next(iter(shared.items()))
        raise BundleError(
            f"bundle {bundle.id}: its tokenizer uses {token!r} as {' and '.join(names)}; "
            "each special token must have its own role"
        )


def highest_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The largest id the tokenizer can produce: its vocabulary's, added tokens and the ids its
    post-processor inserts included."""
    return max([*tokenizer.get_vocab().values(), *tokenizer(PROBE_TEXT)["input_ids"]])


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
