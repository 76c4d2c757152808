"""Image datasets: folders of class sub-folders, tables of image paths, MedMNIST `.npz` files.

Every image is decoded by Pillow, after a pixel limit is checked on its header (a decompression
bomb is refused before it is decoded), and converted to one mode for the whole set: greyscale
(`L`, one channel) or `RGB` (three), the mode most images have unless `mode` names one. All
images must share one size unless `image_size` is given, which resizes them. Any file that cannot
be read is named in a DataError.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from frugalml.data.dataset import LabelledRows
from frugalml.data.io import FORMATS as TABLE_FORMATS
from frugalml.data.io import LABEL_COLUMNS, TEXT_COLUMNS, read_table
from frugalml.errors import DataError
from frugalml.hashing import sha256_file, sha256_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "file_name")
NPZ_SPLITS = ("train", "val", "test")
MODES = {"L": 1, "RGB": 3}  # the modes a set is converted to, and their channels
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
MAX_PIXELS = 40_000_000  # per image, checked on the header before decoding


class ImageTooLarge(DataError):
    """An image has more pixels than the limit (a decompression bomb, or one to shrink first)."""


@dataclass(frozen=True)
class ImageDataset(LabelledRows):
    """Images as one uint8 array (N, H, W, C), C = 1 (greyscale) or 3 (RGB), with optional
    labels and stable row ids. `sha256` identifies the content (the file, with the split read)."""

    images: np.ndarray
    labels: list[str] | None
    ids: list[str] = field(default_factory=list)
    source: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] not in (1, 3):
            raise ValueError(
                f"images must be uint8 (N, H, W, 1 or 3), not {self.images.dtype} {self.images.shape}"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError("images and labels differ in length")
        if not self.ids:
            object.__setattr__(self, "ids", [str(i) for i in range(len(self.images))])
        if len(self.ids) != len(self.images):
            raise ValueError("images and ids differ in length")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def subset(self, indices: Sequence[int]) -> ImageDataset:
        index = np.asarray(indices, dtype=np.int64)
        return ImageDataset(
            images=self.images[index],
            labels=None if self.labels is None else [self.labels[i] for i in index],
            ids=[self.ids[i] for i in index],
            source=self.source,
            sha256=self.sha256,
        )


def is_image_data(path: str | Path) -> bool:
    """Whether `path` holds images for `load_images` rather than texts for `load_dataset`: a
    `.npz` file, a folder of class sub-folders of images, or a table with an image path column
    and no text column."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return True
    if path.is_dir():
        return any(_image_files(sub) for sub in _class_folders(path))
    if path.is_file() and path.suffix.lower() in TABLE_FORMATS:
        try:
            columns = {str(c).lower() for c in read_table(path).columns}
        except DataError:
            return False
        return bool(columns & set(IMAGE_COLUMNS)) and not columns & set(TEXT_COLUMNS)
    return False


def load_images(
    path: str | Path,
    *,
    split: str = "train",
    image_size: int | None = None,
    mode: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> ImageDataset:
    """Load images with their labels from a folder (one sub-folder per class), a CSV / JSONL /
    Parquet table (an image path column, relative to the table's folder, and a label column) or
    a MedMNIST `.npz` file (its `split`: train, val or test).

    `image_size`: resize every image to image_size x image_size (else all must share one size).
    `mode`: "L" or "RGB" (else the mode most images have). Raises DataError naming the file.
    """
    path = Path(path)
    if mode is not None and mode not in MODES:
        raise DataError(f"image mode must be one of {', '.join(MODES)}; got {mode!r}")
    if image_size is not None and image_size < 1:
        raise DataError(f"image size must be at least 1 pixel; got {image_size}")
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.suffix.lower() == ".npz":
        return _load_npz(path, split, image_size, mode, require_labels)
    labels: list[str] | None
    if path.is_dir():
        files, labels = _folder_files(path)
    else:
        files, labels = _table_files(path, image_column, label_column, require_labels)
    if require_labels and labels is None:
        raise DataError(f"{path}: has no labels")
    opened = [open_image(file, str(file), max_pixels) for file in files]
    images = to_array(opened, [str(f) for f in files], image_size=image_size, mode=mode)
    ids = [str(f.relative_to(path if path.is_dir() else path.parent)) for f in files]
    return ImageDataset(images, labels, ids, source=str(path), sha256=sha256_path(path))


def load_eval_images(path: str | Path, size: int, channels: int) -> ImageDataset:
    """Labelled images to evaluate a model of `size` pixels a side and `channels` on: a MedMNIST
    file's test split, or all of a folder or table; resized and converted to the model's input."""
    split = "test" if Path(path).suffix.lower() == ".npz" else "train"
    return load_images(path, split=split, image_size=size, mode="L" if channels == 1 else "RGB")


def open_image(source: Path | bytes, name: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A decoded image from a file or encoded bytes; DataError naming `name` if it is not an
    image, is truncated, or has more than `max_pixels` pixels (checked before decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"{name}: {width}x{height} pixels, more pixels than the limit of {max_pixels:,} "
                    "(a decompression bomb, or an image to shrink first)"
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"{name}: more pixels than the limit of {max_pixels:,} (a decompression bomb? {exc})"
        ) from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image Pillow can read (PNG, JPEG, ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise DataError(f"{name}: cannot be decoded ({exc})") from None
    return image


def target_mode(modes: Sequence[str], mode: str | None = None) -> str:
    """`mode` if given, else the mode most of `modes` convert to ("L" on a tie: no colour lost
    that was ever there is invented)."""
    if mode is not None:
        return mode
    counts = Counter("L" if m in GREY_MODES else "RGB" for m in modes)
    return "RGB" if counts["RGB"] > counts["L"] else "L"


def to_array(
    images: Sequence[Image.Image],
    names: Sequence[str],
    *,
    image_size: int | tuple[int, int] | None = None,
    mode: str | None = None,
) -> np.ndarray:
    """uint8 (N, H, W, C) of decoded images in one mode (`target_mode`), resized to
    `image_size` (an int: square; a pair: (height, width)) or else all of one size."""
    chosen = target_mode([image.mode for image in images], mode)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if size is None and images:
        first = images[0].size[::-1]
        for image, name in zip(images, names, strict=True):
            if image.size[::-1] != first:
                raise DataError(
                    f"{name}: {image.size[0]}x{image.size[1]} pixels, but {names[0]} is "
                    f"{first[1]}x{first[0]}; resize them all with --image-size"
                )
        size = first
    channels = MODES[chosen]
    out = np.empty((len(images), *(size or (0, 0)), channels), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = _pixels(image, chosen, size)
    return out


def conform(images: Sequence[np.ndarray], channels: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, C) arrays of the given channels and (height, width) from arrays of any
    size, HW or HWC with 1, 3 or 4 channels (a model's input, from whatever a caller sends)."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(images), *size, channels), dtype=np.uint8)
    for i, array in enumerate(images):
        if array.ndim == 3 and array.shape[:2] == size and array.shape[2] == channels:
            out[i] = array
            continue
        out[i] = _pixels(Image.fromarray(_squeezed(array)), mode, size)
    return out


def _squeezed(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DataError(f"an image is an array (H, W) or (H, W, 1, 3 or 4); got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def image_array(image: Image.Image, channels: int) -> np.ndarray:
    """A decoded image as uint8 HWC pixels of `channels` (1: greyscale, 3: RGB), its size kept."""
    return _pixels(image, "L" if channels == 1 else "RGB", None)


def _pixels(image: Image.Image, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    if image.mode in ("P", "PA", "LA", "RGBA") and mode == "RGB":
        image = image.convert("RGBA")  # palette transparency composed on black, as everywhere below
    if image.mode in ("I", "I;16", "F"):  # 16-bit and float greyscale: scaled to 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = values.max() or 1.0
        image = Image.fromarray((values * (255.0 / top)).clip(0, 255).astype(np.uint8))
    image = image.convert(mode)
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _class_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _folder_files(path: Path) -> tuple[list[Path], list[str]]:
    files, labels = [], []
    for folder in _class_folders(path):
        found = _image_files(folder)
        files += found
        labels += [folder.name] * len(found)
    if not files:
        raise DataError(
            f"{path}: no images found; an image folder holds one sub-folder per class, each with "
            f"image files ({', '.join(IMAGE_SUFFIXES)})"
        )
    return files, labels


def _table_files(
    path: Path, image_column: str | None, label_column: str | None, require_labels: bool
) -> tuple[list[Path], list[str] | None]:
    frame = read_table(path)
    lowered = {str(c).lower(): c for c in frame.columns}
    image_col = image_column or next((lowered[c] for c in IMAGE_COLUMNS if c in lowered), None)
    if image_col is None or image_col not in frame.columns:
        raise DataError(
            f"{path}: no image column {image_column or ''!r} (looked for {', '.join(IMAGE_COLUMNS)}); "
            f"columns are {list(map(str, frame.columns))}"
        )
    label_col = label_column or next((lowered[c] for c in LABEL_COLUMNS if c in lowered), None)
    if label_col is not None and label_col not in frame.columns:
        raise DataError(f"{path}: no label column {label_col!r}; columns are {list(map(str, frame.columns))}")
    files = []
    for row, value in enumerate(frame[image_col]):
        if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
            raise DataError(f"{path}: empty image path in row {row} (data rows from 0)")
        file = path.parent / str(value)
        if not file.is_file():
            raise DataError(f"{path}: row {row} names {value!r}, but {file} is no file")
        files.append(file)
    if label_col is None:
        if require_labels:
            raise DataError(f"{path}: no label column found (looked for {', '.join(LABEL_COLUMNS)})")
        return files, None
    missing = frame[label_col].isna()
    if missing.any():
        raise DataError(f"{path}: missing label in row {int(missing.idxmax())} (data rows from 0)")
    return files, [str(v) for v in frame[label_col]]


def _load_npz(
    path: Path, split: str, image_size: int | None, mode: str | None, require_labels: bool
) -> ImageDataset:
    if split not in NPZ_SPLITS:
        raise DataError(f"split must be one of {', '.join(NPZ_SPLITS)}; got {split!r}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable NumPy .npz file ({exc})") from None
    with archive:
        key = f"{split}_images"
        if key not in archive.files:
            raise DataError(f"{path}: has no {key!r} array (arrays: {', '.join(archive.files)})")
        images = archive[key]
        labels_key = f"{split}_labels"
        raw_labels = archive[labels_key] if labels_key in archive.files else None
        names = [str(n) for n in archive["label_names"]] if "label_names" in archive.files else None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3) or images.dtype != np.uint8:
        raise DataError(
            f"{path}: {key} must be uint8 of shape (N, H, W) or (N, H, W, 1 or 3); "
            f"got {images.dtype} {images.shape}"
        )
    if mode is not None and MODES[mode] != images.shape[3]:
        images = conform(list(images), MODES[mode], images.shape[1:3])
    if image_size is not None and images.shape[1:3] != (image_size, image_size):
        images = conform(list(images), images.shape[3], (image_size, image_size))
    labels = None
    if raw_labels is not None:
        labels = _npz_labels(path, labels_key, raw_labels, len(images), names or _label_map(path))
    elif require_labels:
        raise DataError(f"{path}: has no {labels_key!r} array")
    digest = hashlib.sha256(f"{sha256_file(path)}:{split}".encode()).hexdigest()
    ids = [f"{split}/{i}" for i in range(len(images))]
    return ImageDataset(np.ascontiguousarray(images), labels, ids, source=f"{path}[{split}]", sha256=digest)


def _npz_labels(
    path: Path, key: str, raw: np.ndarray, n: int, names: Sequence[str] | dict[str, str] | None
) -> list[str]:
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1 or len(raw) != n:
        raise DataError(
            f"{path}: {key} must hold one class per image, shape ({n},) or ({n}, 1); got {raw.shape} "
            "(multi-label data is not supported)"
        )
    if not np.issubdtype(raw.dtype, np.integer):
        return [str(v) for v in raw]
    codes = [int(v) for v in raw]
    if names is None:
        return [str(c) for c in codes]
    table = names if isinstance(names, dict) else dict(enumerate(names))
    lookup = {int(k): str(v) for k, v in table.items()}
    unknown = sorted(set(codes) - set(lookup))
    if unknown:
        raise DataError(f"{path}: class {unknown[0]} in {key} has no name in its label map")
    return [lookup[c] for c in codes]


def _label_map(path: Path) -> list[str] | dict[str, str] | None:
    """Class names from `<stem>.labels.json` beside the file: a list, or {"0": "name", ...}."""
    file = path.with_name(path.stem + ".labels.json")
    if not file.is_file():
        return None
    try:
        names = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(names, list | dict):
        raise DataError(f"{file}: must hold a list of class names or an object of code -> name")
    return names
