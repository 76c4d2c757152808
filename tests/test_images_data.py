"""Image data: folders, tables and MedMNIST .npz files of tiny generated images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from frugalml.data.images import ImageTooLarge, conform, is_image_data, load_images, open_image
from frugalml.errors import DataError


def save(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def pixels(seed: int, shape=(12, 10, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_a_folder_of_class_folders_loads_with_its_labels_and_exact_pixels(tmp_path):
    arrays = {("cat", "a.png"): pixels(0), ("cat", "b.png"): pixels(1), ("dog", "c.png"): pixels(2)}
    for (label, name), array in arrays.items():
        save(tmp_path / label / name, array)
    data = load_images(tmp_path)
    assert data.images.shape == (3, 12, 10, 3) and data.images.dtype == np.uint8
    assert data.labels == ["cat", "cat", "dog"] and data.label_names == ["cat", "dog"]
    assert data.ids == ["cat/a.png", "cat/b.png", "dog/c.png"]
    assert np.array_equal(data.images[2], arrays["dog", "c.png"])  # PNG round trip is lossless
    assert is_image_data(tmp_path)


def test_a_table_names_images_relative_to_itself(tmp_path):
    save(tmp_path / "img" / "1.png", pixels(3, (8, 8)))
    save(tmp_path / "img" / "2.png", pixels(4, (8, 8)))
    (tmp_path / "data.csv").write_text("image,label\nimg/1.png,yes\nimg/2.png,no\n")
    data = load_images(tmp_path / "data.csv")
    assert data.images.shape == (2, 8, 8, 1) and data.labels == ["yes", "no"]
    assert is_image_data(tmp_path / "data.csv")
    (tmp_path / "texts.csv").write_text("text,label\nhello,a\n")
    assert not is_image_data(tmp_path / "texts.csv")


def test_a_table_naming_a_missing_file_names_the_row(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"path": "nowhere.png", "label": "a"}\n')
    with pytest.raises(DataError, match=r"row 0 names 'nowhere.png'"):
        load_images(tmp_path / "data.jsonl")


def medmnist(path, n=6, size=28, labels_shape=(6, 1)):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", n), ("val", 4), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (count, 1), dtype=np.uint8)
    arrays["train_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(labels_shape)
    np.savez(path, **arrays)
    return arrays


def test_a_medmnist_npz_gives_each_split_with_integer_labels_as_strings(tmp_path):
    arrays = medmnist(tmp_path / "set.npz")
    train = load_images(tmp_path / "set.npz")
    assert train.images.shape == (6, 28, 28, 1) and train.labels == ["0", "1", "0", "1", "0", "1"]
    assert np.array_equal(train.images[..., 0], arrays["train_images"])
    test = load_images(tmp_path / "set.npz", split="test")
    assert len(test) == 3 and test.sha256 != train.sha256  # one file, two datasets
    resized = load_images(tmp_path / "set.npz", split="val", image_size=14, mode="RGB")
    assert resized.images.shape == (4, 14, 14, 3)


def test_a_label_map_beside_the_npz_names_the_classes(tmp_path):
    medmnist(tmp_path / "set.npz")
    (tmp_path / "set.labels.json").write_text('{"0": "normal", "1": "pneumonia"}')
    assert load_images(tmp_path / "set.npz").label_names == ["normal", "pneumonia"]


def test_multi_label_npz_is_refused(tmp_path):
    np.savez(
        tmp_path / "multi.npz",
        train_images=np.zeros((2, 8, 8), np.uint8),
        train_labels=np.zeros((2, 3), np.uint8),
    )
    with pytest.raises(DataError, match="multi-label"):
        load_images(tmp_path / "multi.npz")


def test_mixed_sizes_are_an_error_naming_the_file_unless_resized(tmp_path):
    save(tmp_path / "a" / "1.png", pixels(0, (8, 8, 3)))
    save(tmp_path / "b" / "2.png", pixels(1, (9, 8, 3)))
    with pytest.raises(DataError, match=r"2\.png: 8x9 pixels.*--image-size"):
        load_images(tmp_path)
    assert load_images(tmp_path, image_size=6).images.shape == (2, 6, 6, 3)


def test_a_greyscale_rgb_mix_takes_the_majority_mode_or_the_one_named(tmp_path):
    save(tmp_path / "a" / "1.png", pixels(0, (8, 8)))
    save(tmp_path / "a" / "2.png", pixels(1, (8, 8)))
    save(tmp_path / "b" / "3.png", pixels(2, (8, 8, 3)))
    assert load_images(tmp_path).images.shape == (3, 8, 8, 1)
    rgb = load_images(tmp_path, mode="RGB").images
    assert rgb.shape == (3, 8, 8, 3) and np.array_equal(rgb[0, ..., 0], rgb[0, ..., 2])  # grey as RGB


def test_corrupt_and_truncated_images_are_named(tmp_path):
    save(tmp_path / "a" / "good.png", pixels(0, (8, 8)))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"junk\.png: not an image"):
        load_images(tmp_path)
    buffer = io.BytesIO()
    Image.fromarray(pixels(1, (64, 64, 3))).save(buffer, format="JPEG")
    (tmp_path / "b" / "junk.png").unlink()
    (tmp_path / "b" / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: cannot be decoded"):
        load_images(tmp_path)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    # 10,000 x 10,000 pixels of one colour: a few KB as PNG, 100 MB decoded.
    buffer = io.BytesIO()
    Image.new("L", (10_000, 10_000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(ImageTooLarge, match=r"upload: .*more pixels than the limit of 1,000,000"):
        open_image(buffer.getvalue(), "upload", max_pixels=1_000_000)
    small = io.BytesIO()
    Image.new("L", (2_000, 1_000)).save(small, format="PNG")
    with pytest.raises(ImageTooLarge, match="upload: 2000x1000 pixels, more pixels than the limit"):
        open_image(small.getvalue(), "upload", max_pixels=1_000_000)
    save(tmp_path / "a" / "x.png", pixels(0, (8, 8)))
    (tmp_path / "a" / "bomb.png").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"bomb\.png: .*more pixels than the limit"):
        load_images(tmp_path, max_pixels=1_000_000)


def test_conform_converts_any_array_to_the_models_shape():
    grey = pixels(0, (5, 7))
    rgba = pixels(1, (10, 10, 4))
    out = conform([grey, rgba, pixels(2, (4, 4, 3))], 3, (4, 4))
    assert out.shape == (3, 4, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(conform([grey[..., None]], 1, (5, 7))[0, ..., 0], grey)  # fitting: as is
    with pytest.raises(DataError, match="shape"):
        conform([np.zeros((2, 2, 2), np.uint8)], 1, (2, 2))
