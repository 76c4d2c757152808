"""Image models: every architecture's shapes, the bundle round trip, local weights files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from frugalml.bundle import IMAGE_TASK, Bundle, load_bundle, new_bundle_id, write_bundle
from frugalml.errors import BundleError, FrugalError
from frugalml.models.vision import (
    ARCHITECTURES,
    ImageModelConfig,
    build_image_model,
    load_image_model,
    preprocess,
    save_image_model,
)
from frugalml.runtime import load_predictor


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 72)])
def test_every_architecture_gives_logits_and_an_embedding(architecture, channels, size):
    model = build_image_model(architecture, 3, channels, size).eval()
    x = torch.zeros(2, channels, size, size)
    with torch.inference_mode():
        assert model(x).shape == (2, 3)
        assert model.features(x).shape == (2, model.width)


def test_preprocess_scales_and_normalises_to_nchw():
    images = np.full((2, 4, 5, 3), 255, dtype=np.uint8)
    x = preprocess(images, [0.5, 0.5, 1.0], [0.5, 0.25, 1.0])
    assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32
    assert np.allclose(x[:, 0], 1.0) and np.allclose(x[:, 1], 2.0) and np.allclose(x[:, 2], 0.0)


def image_bundle(tmp_path, architecture="cnn", labels=("a", "b")) -> Bundle:
    torch.manual_seed(0)
    config = ImageModelConfig(architecture, len(labels), 1, 16, [0.4], [0.2])
    model = build_image_model(architecture, len(labels), 1, 16).eval()
    bundle = Bundle(
        id=new_bundle_id(),
        name="img",
        labels=list(labels),
        base_model=architecture,
        method="scratch",
        task=IMAGE_TASK,
    )
    return write_bundle(tmp_path, bundle, lambda folder: save_image_model(folder, model, config))


def test_an_image_bundle_reloads_to_the_same_predictions(tmp_path):
    bundle = load_bundle(image_bundle(tmp_path).path)
    model, config = load_image_model(bundle)
    assert config.architecture == "cnn" and config.image_size == 16 and config.mean == [0.4]
    predictor = load_predictor(bundle)
    images = list(np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8))
    first = predictor.predict_proba(images)
    assert first.shape == (3, 2) and np.allclose(first.sum(axis=1), 1, atol=1e-5)
    with torch.inference_mode():
        direct = torch.softmax(model(torch.from_numpy(preprocess(np.stack(images), [0.4], [0.2]))), 1)
    assert np.allclose(first, direct.numpy(), atol=1e-5)
    # Another size and colour: converted to the model's input, not refused.
    assert predictor.predict_proba([np.zeros((30, 20, 3), np.uint8)]).shape == (1, 2)


def test_a_tampered_image_bundle_is_refused(tmp_path):
    bundle = image_bundle(tmp_path)
    config = bundle.path / "image_config.json"
    config.write_text(config.read_text().replace('"cnn"', '"resnet18"'))
    with pytest.raises(BundleError, match=r"image_config\.json has 139 bytes"):
        load_bundle(bundle.path)


def test_a_text_bundle_is_not_loaded_as_an_image_one(tmp_path):
    bundle = image_bundle(tmp_path)
    bundle.task = "text-classification"
    with pytest.raises(BundleError, match="not an image-classification one"):
        load_image_model(bundle)


def test_local_weights_load_where_names_and_shapes_fit(tmp_path):
    source = build_image_model("cnn", 5, 1, 16)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    save_file(state, str(tmp_path / "w.safetensors"))
    model = build_image_model("cnn", 2, 1, 16, weights=tmp_path / "w.safetensors")
    assert torch.equal(model.state_dict()["body.4.0.weight"], source.state_dict()["body.4.0.weight"])
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(FrugalError, match="none of its tensors fits"):
        build_image_model("cnn", 2, 1, 16, weights=tmp_path / "other.pt")
