"""The model card (README.md) of an exported model: YAML front matter for the hub and for tools,
then what the model is, its labels and figures, and how to load it without frugalml.

The front matter uses the hub's own keys (library_name, pipeline_tag, base_model, tags) and keeps
frugalml's facts (labels, metrics, training data hash, lineage) under one `frugalml` key, so
hub validation, which gives `metrics` and `model-index` their own meaning, never trips on them.
"""

from __future__ import annotations

from typing import Any

import yaml

from frugalml.bundle import Bundle

LIBRARIES = {"sentence-transformers": "sentence-transformers", "hf": "transformers"}

SENTENCE_TRANSFORMERS_USE = """\
```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{path}")  # no remote code
scores = model.encode(["how do I reset my password"], convert_to_tensor=True)  # logits, one per label
labels = model[0].auto_model.config.id2label
print([labels[i] for i in scores.argmax(-1).tolist()], scores.softmax(-1))
```

Without sentence-transformers, with transformers alone (the same numbers):

```python
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

encoder = AutoModel.from_pretrained("{path}/0_Transformer").eval()
tokenizer = AutoTokenizer.from_pretrained("{path}/0_Transformer")
head = load_file("{path}/3_Dense/model.safetensors")  # linear.weight [labels, hidden], linear.bias
batch = tokenizer(["how do I reset my password"], padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    states = encoder(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling
{normalize}logits = pooled @ head["linear.weight"].T + head["linear.bias"]
```
"""

HF_USE = """\
The classifier pools the encoder's token states by their mean, which no built-in transformers
class does, so its code (`hf_model.py`, imports torch and transformers only) ships beside it:

```python
from transformers import pipeline

classify = pipeline("text-classification", model="{path}", trust_remote_code=True)
print(classify("how do I reset my password"))
```

For a folder that loads without remote code, export with `--format sentence-transformers`.
"""

ADAPTER_USE = {
    "sentence-transformers": """\
## The PEFT adapter

`adapter/` holds the {method} adapter on the plain encoder (task FEATURE_EXTRACTION), with the
head left in `3_Dense`; the weights in `0_Transformer` already have it merged in. PEFT finds the
base by the name the adapter records (`{base}`; offline, that name must be in the Hugging Face
cache):

```python
from peft import AutoPeftModelForFeatureExtraction

encoder = AutoPeftModelForFeatureExtraction.from_pretrained("{path}/adapter")
```

then pool, normalize and apply the head as above. With a local copy of the base instead:
`PeftModel.from_pretrained(AutoModel.from_pretrained(LOCAL_BASE), "{path}/adapter")`.
""",
    "hf": """\
## The PEFT adapter

`adapter/` holds the {method} adapter in PEFT's format for frugalml's classifier over `{base}`
(the head saved whole); `model.safetensors` already has it merged in. Load it on that classifier,
`PeftModel.from_pretrained(new_classifier("{base}", labels), "{path}/adapter")` (`frugalml.models`),
not with `AutoPeftModelForSequenceClassification`, which would build BERT's own [CLS] classifier
from `{base}`. The sentence-transformers export carries the same adapter for
`AutoPeftModelForFeatureExtraction`.
""",
}


def model_card(
    bundle: Bundle,
    format: str,
    base: str,
    *,
    data_sha256: str,
    normalize: bool,
    has_adapter: bool,
    path: str = ".",
) -> str:
    """README.md text for `bundle` exported as `format`; `path` is where the load examples look."""
    metrics = {k: v for k, v in bundle.metrics.items() if isinstance(v, int | float)}
    front: dict[str, Any] = {
        "library_name": LIBRARIES[format],
        "pipeline_tag": "text-classification",
        "base_model": base,
        "tags": ["frugalml", "text-classification", bundle.method],
        "frugalml": {
            "bundle_id": bundle.id,
            "name": bundle.name,
            "method": bundle.method,
            "precision": bundle.precision,
            "labels": list(bundle.labels),
            "metrics": metrics,
            "training_data_sha256": data_sha256,
            "parents": list(bundle.parents),
            "created_at": bundle.created_at,
            "frugalml_version": bundle.frugalml_version,
        },
    }
    if format == "sentence-transformers":
        front["tags"] += ["sentence-transformers", "feature-extraction"]
        use = SENTENCE_TRANSFORMERS_USE.format(
            path=path,
            normalize="pooled = torch.nn.functional.normalize(pooled, dim=-1)\n" if normalize else "",
        )
    else:
        use = HF_USE.format(path=path)
    figures = "\n".join(f"| {name} | {value} |" for name, value in metrics.items()) or "| (none) | |"
    labels = ", ".join(f"`{label}`" for label in bundle.labels)
    adapter = ADAPTER_USE[format].format(method=bundle.method, base=base, path=path) if has_adapter else ""
    return (
        "---\n"
        + yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
        + "---\n\n"
        + f"# {bundle.name}\n\n"
        + f"A text classifier over {len(bundle.labels)} labels, tuned by frugalml ({bundle.method}) from "
        + f"`{base}`: the encoder's token states are mean-pooled"
        + (", L2-normalized" if normalize else "")
        + " and a linear head gives one score per label.\n\n"
        + f"Labels: {labels}\n\n"
        + "| metric | value |\n| --- | --- |\n"
        + figures
        + "\n\n"
        + f"Training data sha256: `{data_sha256 or 'unknown'}` (frugalml bundle `{bundle.id}`).\n\n"
        + "## How to load\n\n"
        + use
        + ("\n" + adapter if adapter else "")
    )
