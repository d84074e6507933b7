"""Decoding, validating and thumbnailing images with Pillow.

The policy is explicit: only the configured formats are opened (never EPS or other
formats that shell out), images above ``images.max_pixels`` are refused before they are
decoded (decompression bombs), truncated files are refused (Pillow opens lazily, so the
whole image is loaded here), and EXIF orientation is applied. Every decode holds its
estimated memory of a process-wide budget (`imgdex.budget`) and is reduced at once to
the 8-bit working size models and thumbnails need: a small file that decodes to hundreds
of megapixels costs its raster for a moment, never a float copy or a full-size RGB one.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

from imgdex.budget import DECODE_BUDGET, MemoryBudget
from imgdex.config import ImagesConfig
from imgdex.errors import BadRequest, UnprocessableImage, UnsupportedMedia

__all__ = ["DecodedImage", "decode_image", "make_thumbnail", "register_heif"]

_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tiff", "HEIF": "heic"}
_MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "TIFF": "image/tiff",
    "HEIF": "image/heic",
}


def register_heif() -> None:
    """Teach Pillow HEIC/HEIF (format ``HEIF``) through pillow-heif; idempotent."""
    if "HEIF" in Image.OPEN:
        return
    from pillow_heif import register_heif_opener

    register_heif_opener()


register_heif()
# Bytes per pixel of Pillow's rasters (every other mode is stored in 4).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# The working image's longest side is at most this many times images.decode_min_side.
_LONG_SIDES = 4


@dataclass(frozen=True)
class DecodedImage:
    """An image checked and decoded for models, with the facts the catalog keeps."""

    image: Image.Image  # 8-bit RGB, EXIF-oriented, reduced to the working size
    format: str
    width: int  # as displayed (after EXIF orientation), at full resolution
    height: int

    @property
    def extension(self) -> str:
        return _EXTENSIONS.get(self.format, self.format.lower())


def media_type(fmt: str) -> str:
    return _MEDIA_TYPES.get(fmt, f"image/{fmt.lower()}")


def decode_image(
    data: bytes | bytearray | Path, policy: ImagesConfig, budget: MemoryBudget = DECODE_BUDGET
) -> DecodedImage:
    """Open, check and decode image bytes (or a staged file) into an 8-bit RGB working
    image no larger than models and thumbnails need; raises a 4xx error naming the problem.
    """
    if isinstance(data, Path):
        with open(data, "rb") as f:
            if not f.read(1):
                raise BadRequest("the uploaded file is empty", code="empty_file")
            f.seek(0)
            return _decode(f, policy, budget)
    if not data:
        raise BadRequest("the uploaded file is empty", code="empty_file")
    return _decode(io.BytesIO(data), policy, budget)


def _decode(fp: IO[bytes], policy: ImagesConfig, budget: MemoryBudget) -> DecodedImage:
    Image.init()  # register every format plugin, so OPEN is complete
    formats = [f for f in policy.formats if f in Image.OPEN]
    # Pillow's own bomb check warns above this and raises above twice it (quoting twice
    # our limit); ours below refuses anything above it before a pixel is decoded.
    Image.MAX_IMAGE_PIXELS = policy.max_pixels
    try:
        im = Image.open(fp, formats=formats)
    except UnidentifiedImageError:
        raise UnsupportedMedia(
            f"the file is not an image in a supported format ({', '.join(formats)})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_large(policy, _pixels_in(str(exc))) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnprocessableImage(
            f"the image header is corrupt: {exc}", code="corrupt_image"
        ) from None
    with im:
        return _decode_opened(im, policy, budget)


def _decode_opened(im: Image.Image, policy: ImagesConfig, budget: MemoryBudget) -> DecodedImage:
    fmt = im.format or "UNKNOWN"
    width, height = im.size
    if width <= 0 or height <= 0:
        raise UnprocessableImage("the image has no pixels", code="corrupt_image")
    if width * height > policy.max_pixels:
        raise _too_large(policy, width * height, f"{width}x{height} = ")
    try:
        # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still leaves enough detail.
        side = policy.decode_min_side
        im.draft("RGB", (side, side))
        target = _working_size(im.size, side)
        cost = _decode_cost(im.mode, im.size, target)
        with budget.hold(cost, policy.decode_budget_bytes, policy.decode_wait, "this image"):
            im.load()
            # Only now: a PNG's getexif() loads the whole image (EXIF may follow IDAT).
            orientation = _orientation(im)
            small = _reduce(im, target)
            if small is not im:
                im.close()  # frees the full raster now, not when the caller lets go
            oriented = ImageOps.exif_transpose(small) if orientation != 1 else small
            rgb = _to_rgb(oriented)
    except Image.DecompressionBombError as exc:
        raise _too_large(policy, _pixels_in(str(exc))) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnprocessableImage(
            f"the image data is truncated or corrupt: {exc}", code="corrupt_image"
        ) from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(image=rgb, format=fmt, width=width, height=height)


def _too_large(policy: ImagesConfig, pixels: int | None, size: str = "") -> UnprocessableImage:
    has = f"has {size}{pixels} pixels, more than" if pixels else "is larger than"
    return UnprocessableImage(
        f"the image {has} the limit of {policy.max_pixels} pixels (images.max_pixels; "
        "possible decompression bomb)",
        code="image_too_large",
    )


def _pixels_in(message: str) -> int | None:
    # Pillow says "Image size (N pixels) exceeds limit of 2 x ours ...".
    match = re.search(r"\((\d+) pixels\)", message)
    return int(match.group(1)) if match else None


def _working_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The size a decoded image is reduced to: `size` divided by a whole factor that keeps
    the shortest side at least `side`, or more so that the longest is at most
    ``_LONG_SIDES x side`` (a panorama or a one-pixel strip shrinks too)."""
    width, height = size
    longest = -(-max(width, height) // (_LONG_SIDES * side))
    factor = max(1, min(width, height) // side, longest)
    return max(1, -(-width // factor)), max(1, -(-height // factor))


def _decode_cost(mode: str, size: tuple[int, int], target: tuple[int, int]) -> int:
    """Bytes a decode holds at its peak: the full raster as Pillow stores it, a palette
    expanded before reducing, and the working image in a few copies."""
    pixels = size[0] * size[1]
    raster = _PIXEL_BYTES.get(mode, 4)
    expanded = 4 if mode == "P" and target != size else 0
    return pixels * (raster + expanded) + target[0] * target[1] * 4 * 3


def _reduce(im: Image.Image, target: tuple[int, int]) -> Image.Image:
    if target == im.size:
        return im
    if im.mode == "P":
        # Resizing a palette image picks nearest pixels: expand the palette first.
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    # BOX averages each block of pixels, works in every mode (16-bit too) and reads the
    # raster once.
    return im.resize(target, Image.Resampling.BOX, reducing_gap=None)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # unreadable EXIF: exif_transpose would ignore it too
        return 1


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # Pillow clips wide integer and float modes to 0-255 instead of scaling them.
        # This is the reduced working image: one scaling pass in Pillow, no array copy.
        top = 65535.0
        if not im.mode.startswith("I;16"):
            high = im.getextrema()[1]
            top = max(float(high) if isinstance(high, int | float) else 255.0, 255.0)
        scale = 255.0 / top
        return im.convert("F").point(lambda v: v * scale).convert("L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def make_thumbnail(decoded: DecodedImage, size: int, quality: int) -> bytes:
    """A JPEG that fits in ``size x size``, keeping the aspect ratio."""
    image = decoded.image
    scale = min(1.0, size / image.width, size / image.height)
    fitted = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # What Image.thumbnail does, without first copying the full decoded image.
    thumb = image.resize(fitted, Image.Resampling.LANCZOS, reducing_gap=2.0)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()
