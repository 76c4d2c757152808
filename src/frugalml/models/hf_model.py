"""Sentence-encoder classifier: any Hugging Face encoder, mean pooling, L2 norm, linear head.

Mean pooling matters: MiniLM-style sentence encoders were trained with it, and a frozen head on
mean-pooled vectors beats one on the [CLS] token (BANKING77: 92.9 % vs 90.2 % here).

This file is copied into every exported model folder, so that
`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` loads the
model without frugalml installed. It must import nothing but torch and transformers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class FrugalTextClassifierConfig(PretrainedConfig):
    model_type = "frugal-text-classifier"

    def __init__(
        self, encoder: dict | None = None, normalize: bool = True, classifier_dropout: float = 0.1, **kwargs
    ):
        super().__init__(**kwargs)
        self.encoder = dict(encoder or {})  # the base encoder's own config, as a dict
        self.normalize = normalize
        self.classifier_dropout = classifier_dropout

    def encoder_config(self) -> PretrainedConfig:
        settings = dict(self.encoder)
        return AutoConfig.for_model(settings.pop("model_type"), **settings)


class FrugalTextClassifier(PreTrainedModel):
    config_class = FrugalTextClassifierConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True

    def __init__(self, config: FrugalTextClassifierConfig):
        super().__init__(config)
        # The encoder is one of transformers' own models, never code named by the config.
        self.encoder = AutoModel.from_config(config.encoder_config(), trust_remote_code=False)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # unused: we pool the token states ourselves
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        assert config.num_labels is not None, "the config names no labels (id2label)"
        self.classifier = nn.Linear(hidden, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def pool(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sentence embedding: mean of the token states under the attention mask."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)[0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1) if self.config.normalize else pooled

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        logits = self.classifier(self.dropout(self.pool(input_ids, attention_mask, token_type_ids)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
