"""Decoding, validating and thumbnailing images with Pillow.

The policy is explicit: only the configured formats are opened (never EPS or other
formats that shell out), images above ``images.max_pixels`` are refused before they are
decoded (decompression bombs), truncated files are refused (Pillow opens lazily, so the
whole image is loaded here), and EXIF orientation is applied.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

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


@dataclass(frozen=True)
class DecodedImage:
    """An image checked and decoded for models, with the facts the catalog keeps."""

    image: Image.Image  # RGB, EXIF-oriented, possibly reduced in scale (draft)
    format: str
    width: int  # as displayed (after EXIF orientation), at full resolution
    height: int

    @property
    def extension(self) -> str:
        return _EXTENSIONS.get(self.format, self.format.lower())


def media_type(fmt: str) -> str:
    return _MEDIA_TYPES.get(fmt, f"image/{fmt.lower()}")


def decode_image(data: bytes | bytearray, policy: ImagesConfig) -> DecodedImage:
    """Open, check and fully decode image bytes; raises a 4xx error naming the problem."""
    if not data:
        raise BadRequest("the uploaded file is empty", code="empty_file")
    Image.init()  # register every format plugin, so OPEN is complete
    formats = [f for f in policy.formats if f in Image.OPEN]
    # Pillow's own bomb check warns above this and raises above twice it; ours below
    # refuses anything above it, before a single pixel is decoded.
    Image.MAX_IMAGE_PIXELS = policy.max_pixels
    try:
        im = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        raise UnsupportedMedia(
            f"the file is not an image in a supported format ({', '.join(formats)})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnprocessableImage(str(exc), code="image_too_large") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnprocessableImage(
            f"the image header is corrupt: {exc}", code="corrupt_image"
        ) from None

    fmt = im.format or "UNKNOWN"
    width, height = im.size
    if width <= 0 or height <= 0:
        raise UnprocessableImage("the image has no pixels", code="corrupt_image")
    if width * height > policy.max_pixels:
        raise UnprocessableImage(
            f"the image has {width}x{height} = {width * height} pixels, more than the "
            f"limit of {policy.max_pixels} (possible decompression bomb)",
            code="image_too_large",
        )
    try:
        # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still leaves enough detail.
        side = policy.decode_min_side
        im.draft("RGB", (side, side))
        im.load()
        # exif_transpose copies the whole image even when there is nothing to do.
        oriented = ImageOps.exif_transpose(im) if _orientation(im) != 1 else im
        rgb = _to_rgb(oriented)
    except Image.DecompressionBombError as exc:
        raise UnprocessableImage(str(exc), code="image_too_large") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnprocessableImage(
            f"the image data is truncated or corrupt: {exc}", code="corrupt_image"
        ) from None
    if _orientation(im) in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(image=rgb, format=fmt, width=width, height=height)


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
        import numpy as np

        values = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") else max(float(values.max()), 255.0)
        grey = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
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


def open_stored(data: bytes, policy: ImagesConfig) -> Image.Image:
    """Decode an image that was already accepted (for background embedding)."""
    return decode_image(data, policy).image
