"""The user's image files as input rows of a model, for ``fastmlp predict``.

Shape legend: n images, H x W pixels with C channels in the model's input geometry;
h x w x c those of a file's images.

:func:`read_images` reads PNG/JPEG and the other formats Pillow knows, ``.npy`` files
(one image or a stack) and IDX files, and converts them to the model's geometry:
colour to grayscale (ITU-R 601-2 luma, as Pillow's "L" mode) or grayscale to colour,
alpha dropped, and a bilinear resize when the sizes differ. What it changed it says in
notes, which the command prints on stderr.
"""

from __future__ import annotations

import os
import tokenize
import warnings

import numpy as np

from ._npy import declared_and_held

__all__ = ["ImageFileError", "model_geometry", "read_images"]

_PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_PILLOW_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00",
                 b"MM\x00*")
_LUMA = np.array([0.299, 0.587, 0.114])
PILLOW_HINT = 'pip install "fastmlp[image]" (or pip install pillow)'


class ImageFileError(ValueError):
    """A file that cannot be read as images for the model: the message says why."""


def model_geometry(n_features, image_shape=None):
    """(H, W, C) of a model's input: ``image_shape`` ((H, W) or (H, W, C)) when known,
    else square grayscale or square RGB images of ``n_features`` pixels."""
    if image_shape is not None:
        shape = tuple(int(v) for v in image_shape)
        shape = shape + (1,) if len(shape) == 2 else shape
        if len(shape) == 3 and int(np.prod(shape)) == n_features:
            return shape
    for channels in (1, 3):
        side = int(round((n_features / channels) ** 0.5))
        if side * side * channels == n_features:
            return (side, side, channels)
    raise ImageFileError(
        f"the model takes {n_features} features, which are no square grayscale or RGB "
        f"image, and it does not say its image shape; pass .npy files of "
        f"{n_features} values per image")


def read_images(path, geometry):
    """(images, stacked, notes): the file's images as (n, H, W, C) in the model's
    geometry, whether the file held a stack of them, and what was converted."""
    if not os.path.isfile(path):
        raise ImageFileError("no such file" if not os.path.exists(path) else "not a file")
    kind = _kind(path)
    notes = []
    if kind == "pillow":
        images = _read_pillow(path, geometry[2], notes)[None]
        stacked = False
    else:
        array = _read_npy(path) if kind == "npy" else _read_idx(path)
        images, stacked = _as_stack(array, geometry)
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise ImageFileError("holds NaN or infinite values, which are no pixel values")
    images = _convert_channels(images, geometry[2], notes)
    images = _resize(images, geometry[:2], notes)
    return images, stacked, notes


def pixel_range_note(model, images):
    """A note when the images' values do not fit the pixels the model's PixelScaler takes
    (0 to its ``max_value``), else None: images already scaled to [0, 1], say, give
    confident and meaningless predictions."""
    max_value = _scaler_max_value(model)
    if max_value is None:
        return None
    lo, hi = float(images.min()), float(images.max())
    span = f"pixel values span {lo:g} to {hi:g}"
    # lo < hi: a single value (an all-black image) says nothing of the scale.
    if images.dtype.kind == "f" and 0 <= lo < hi <= 1 < max_value / 2:
        return (f"{span}, but the model takes pixels 0 to {max_value:g}; if these images "
                f"were scaled to [0, 1], multiply them by {max_value:g}")
    if lo < 0 or hi > max_value:
        return f"{span}, outside the 0 to {max_value:g} the model takes"
    return None


def _scaler_max_value(model):
    """max_value of the PixelScaler a model applies to raw pixels first, or None without
    one (or for a model of other parts)."""
    from .export import _parts

    try:
        scalers = _parts(model, "fastmlp predict")[0]
    except TypeError:
        return None
    return float(scalers[0][1].max_value) if scalers else None


def read_array(path):
    """A .npy or IDX file's array (by its content, not its name), checked as read_images
    checks them; ImageFileError with the reason otherwise."""
    if not os.path.isfile(path):
        raise ImageFileError("no such file" if not os.path.exists(path) else "not a file")
    return _read_npy(path) if _kind(path) == "npy" else _read_idx(path)


def _kind(path):
    suffix = os.path.splitext(path.lower().removesuffix(".gz"))[1]
    if suffix == ".npy":
        return "npy"
    if suffix in _PILLOW_SUFFIXES:
        return "pillow"
    try:
        with open(path, "rb") as f:
            start = f.read(8)
    except OSError as exc:
        raise ImageFileError(f"cannot read it: {exc.strerror or exc}") from None
    if start.startswith(b"\x93NUMPY"):
        return "npy"
    return "pillow" if start.startswith(_PILLOW_MAGIC) else "idx"


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImageFileError(f"reading image files needs Pillow: {PILLOW_HINT}") from None
    return Image


def _read_pillow(path, channels, notes):
    Image = _pillow()
    try:
        with warnings.catch_warnings(record=True) as caught, Image.open(path) as image:
            warnings.simplefilter("always")
            image.load()
            notes += [f"Pillow: {w.message}" for w in caught]  # e.g. corrupt EXIF data
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: to 0..255
                pixels = np.asarray(image, dtype=np.float64) / 257.0
                return _convert_channels(pixels[None, ..., None], channels, notes)[0]
            mode = {1: "L", 3: "RGB"}.get(channels, "RGBA")
            if image.mode not in (mode, "1") and not (mode == "L" and image.mode == "LA"):
                notes.append("converted to grayscale" if mode == "L" else f"converted to "
                                                                          f"{mode}")
            return _channels_last(np.asarray(image.convert(mode)))
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors of bad files
        raise ImageFileError(f"not a readable image: {exc}") from None
    except Image.DecompressionBombError as exc:  # a size (perhaps a damaged one) to refuse
        raise ImageFileError(f"too large to read: {exc}") from None


def _read_npy(path):
    try:
        with open(path, "rb") as f:
            sizes = declared_and_held(f, os.fstat(f.fileno()).st_size)
        if sizes is not None and sizes[0] > sizes[1]:
            raise ValueError(f"its header declares {sizes[0]} bytes of values, but it "
                             f"holds {sizes[1]}")
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        # (a damaged header fails NumPy's parse of it with any of the last two)
        raise ImageFileError(f"not a readable .npy file: {exc}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise ImageFileError(f"holds {getattr(array, 'dtype', type(array))} values, not "
                             f"pixel values (numbers)")
    return array


def _read_idx(path):
    from .datasets import read_idx

    try:
        return np.asarray(read_idx(path))
    except OSError as exc:
        raise ImageFileError(f"cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ImageFileError(f"neither an image (PNG, JPEG, ...), a .npy file nor an IDX "
                             f"file ({exc})") from None


def _channels_last(image):
    return image[..., None] if image.ndim == 2 else image


def _as_stack(array, geometry):
    """(n, h, w, c) images of an array, and whether it was a stack: rows of the model's
    n_features values, (h, w) or (h, w, c) images, or stacks (n, h, w), (n, h, w, c) or
    channels-first (n, c, h, w)."""
    H, W, C = geometry
    n_features = H * W * C
    shape = array.shape
    if array.size == 0:
        raise ImageFileError(f"holds no pixels (an array of shape {shape})")
    if array.ndim == 1 and shape[0] == n_features:
        return array.reshape(1, H, W, C), False
    if array.ndim == 2:
        if shape[1] == n_features and shape != (H, W):
            return array.reshape(shape[0], H, W, C), True
        return array[None, :, :, None], False
    if array.ndim == 3:
        if shape[-1] in (1, 3, 4):
            return array[None], False
        return array[..., None], True
    if array.ndim == 4:
        if shape[-1] in (1, 3, 4):
            return array, True
        if shape[1] in (1, 3, 4):
            return np.moveaxis(array, 1, -1), True
    raise ImageFileError(
        f"holds an array of shape {shape}, which is no image: expected (H, W), (H, W, C), "
        f"a stack (n, H, W), (n, H, W, C) or (n, C, H, W), or rows of {n_features} values "
        f"(the model takes {H}x{W} images with {C} channel{'s' if C > 1 else ''})")


def _convert_channels(images, channels, notes):
    c = images.shape[-1]
    if c == channels:
        return images
    if channels == 1 and c in (3, 4):
        notes.append("converted to grayscale")
        return (images[..., :3].astype(np.float64) @ _LUMA)[..., None].astype(np.float32)
    if channels == 3 and c in (1, 4):
        notes.append("converted to RGB")
        return np.repeat(images, 3, axis=-1) if c == 1 else images[..., :3]
    raise ImageFileError(f"has {c} channels; the model takes {channels}")


def _resize(images, size, notes):
    """Bilinear resize of every image and channel to size (H, W), in float32."""
    n, h, w, c = images.shape
    if (h, w) == tuple(size):
        return images
    if min(h, w) < 1:
        raise ImageFileError(f"holds empty images ({h}x{w})")
    Image = _pillow()
    H, W = size
    notes.append(f"resized from {h}x{w} to {H}x{W} (the model's input size)")
    out = np.empty((n, H, W, c), dtype=np.float32)
    for i in range(n):
        for k in range(c):
            plane = Image.fromarray(np.ascontiguousarray(images[i, :, :, k], np.float32))
            out[i, :, :, k] = np.asarray(plane.resize((W, H), Image.BILINEAR))
    return out
