"""Photo metadata read from EXIF and XMP: when, with what camera, where.

Pure functions over a Pillow image or file bytes, nothing stored here. Every value is
checked and converted to a JSON-safe type; anything malformed (wrong types, zero or NaN
rationals, impossible dates such as ``0000:00:00 00:00:00``, coordinates out of range)
becomes ``None`` instead of an error: a photo's EXIF is untrusted input and must never
fail an upload.

``taken_at`` comes from, in order: EXIF DateTimeOriginal (with OffsetTimeOriginal, or
the generic OffsetTime, when present: an aware ISO 8601 string, else a naive one), EXIF
DateTimeDigitized (with OffsetTimeDigitized), XMP ``exif:DateTimeOriginal``, XMP
``xmp:CreateDate``. IFD0 DateTime is not used: it is when the file was last changed
(editors rewrite it), not when the photo was taken.
"""

from __future__ import annotations

import io
import math
import re
import struct
from datetime import datetime
from typing import Any

import msgspec
from PIL import Image, PngImagePlugin

from imgdex.imaging import register_heif

__all__ = ["Camera", "ExifDetails", "Gps", "PhotoMetadata", "read_metadata"]

register_heif()

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _ORIENTATION, _SOFTWARE = 0x010F, 0x0110, 0x0112, 0x0131
_DATE_ORIGINAL, _DATE_DIGITIZED = 0x9003, 0x9004
_OFFSET, _OFFSET_ORIGINAL, _OFFSET_DIGITIZED = 0x9010, 0x9011, 0x9012
_EXPOSURE, _FNUMBER, _ISO, _FOCAL = 0x829A, 0x829D, 0x8827, 0x920A
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_MAX_TEXT = 200
_EXIF_DATE = re.compile(r"\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_TEXT = re.compile(r"\s*([+-])(\d{2}):(\d{2})\s*$")
# PNG chunks that may follow the pixel data and carry metadata (EXIF, XMP, text).
_PNG_METADATA_CHUNKS = {b"eXIf", b"iTXt", b"tEXt", b"zTXt"}


class Camera(msgspec.Struct, frozen=True, kw_only=True):
    make: str | None = None
    model: str | None = None
    lens: str | None = None


class Gps(msgspec.Struct, frozen=True, kw_only=True):
    lat: float
    lon: float
    alt: float | None = None  # metres above sea level (negative below)


class ExifDetails(msgspec.Struct, frozen=True, kw_only=True):
    focal_length: float | None = None  # millimetres
    aperture: float | None = None  # f-number
    exposure_time: float | None = None  # seconds
    iso: int | None = None
    orientation: int | None = None  # 1-8, as EXIF defines it
    software: str | None = None


class PhotoMetadata(msgspec.Struct, frozen=True, kw_only=True):
    taken_at: str | None = None  # ISO 8601; aware only when the file gives an offset
    camera: Camera | None = None
    gps: Gps | None = None
    exif: ExifDetails = msgspec.field(default_factory=ExifDetails)


def read_metadata(image: Image.Image | bytes) -> PhotoMetadata:
    """The metadata of an image or image file; never raises on malformed metadata."""
    try:
        im = Image.open(io.BytesIO(image)) if isinstance(image, bytes | bytearray) else image
    except Exception:  # not an image at all: no metadata, the decoder reports the rest
        return PhotoMetadata()
    exif = _safe(lambda: _exif_of(im), Image.Exif())
    ifd0 = _safe(lambda: dict(exif), {})
    exif_ifd = _safe(lambda: dict(exif.get_ifd(_EXIF_IFD)), {})
    gps_ifd = _safe(lambda: dict(exif.get_ifd(_GPS_IFD)), {})
    xmp = _safe(lambda: _xmp_text(im), "")
    return PhotoMetadata(
        taken_at=_safe(lambda: _taken_at(exif_ifd, xmp), None),
        camera=_safe(lambda: _camera(ifd0, exif_ifd), None),
        gps=_safe(lambda: _gps(gps_ifd), None),
        exif=_safe(lambda: _details(ifd0, exif_ifd), ExifDetails()),
    )


def _exif_of(im: Image.Image) -> Image.Exif:
    """The image's EXIF, read without decoding a pixel.

    Pillow's PNG ``getexif()`` decodes the whole image first, because an eXIf chunk may
    follow the pixel data: for a small file of hundreds of megapixels that is its full
    raster, a second time and outside the decode budget (`imgdex.budget`). Here those
    chunks are read by skipping over the pixel data instead."""
    if isinstance(im, PngImagePlugin.PngImageFile) and im.tile:  # not decoded yet
        _read_png_trailer(im)
        return Image.Image.getexif(im)  # the generic reader: info only, no load()
    return im.getexif()


def _read_png_trailer(im: PngImagePlugin.PngImageFile) -> None:
    """Add the metadata chunks that follow a PNG's pixel data to ``im.info``.

    Only chunk headers are read past the pixel data (seeks, not reads); Pillow's own
    chunk readers parse the metadata chunks, with their limits on text size."""
    fp = im.fp
    if fp is None:
        return
    here = fp.tell()
    stream = PngImagePlugin.PngStream(fp)
    try:
        fp.seek(8)  # past the signature
        while True:
            cid, pos, length = stream.read()  # SyntaxError at the end of a broken file
            if cid == b"IEND":
                break
            if cid in _PNG_METADATA_CHUNKS:
                stream.call(cid, pos, length)
            fp.seek(pos + length + 4)  # the next chunk, past this one's CRC
    except (SyntaxError, ValueError, EOFError, OSError, struct.error):
        pass  # a truncated or malformed trailer: keep what was read
    finally:
        fp.seek(here)
    for key, value in stream.im_info.items():
        im.info.setdefault(key, value)  # chunks before the pixel data were read at open


def _safe(fn: Any, default: Any) -> Any:
    try:
        return fn()
    except Exception:  # hostile input reaches Pillow's and our parsers: keep the default
        return default


# --- values ---------------------------------------------------------------------------


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = "".join(ch for ch in value.replace("\x00", " ") if ch.isprintable()).strip()
    return cleaned[:_MAX_TEXT] or None


def _number(value: object) -> float | None:
    if isinstance(value, tuple | list) and len(value) == 2 and not isinstance(value[0], tuple):
        num, den = value
        value = _number(num) / den if _number(den) else None  # type: ignore[operator]
    elif isinstance(value, tuple | list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # ints, floats, IFDRational
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _positive(value: object, limit: float) -> float | None:
    number = _number(value)
    return round(number, 6) if number is not None and 0 < number < limit else None


def _integer(value: object, low: int, high: int) -> int | None:
    number = _number(value)
    if number is None or number != int(number) or not low <= number <= high:
        return None
    return int(number)


# --- fields ---------------------------------------------------------------------------


def _exif_date(value: object, offset: object) -> str | None:
    text = _text(value)
    match = _EXIF_DATE.match(text or "")
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:  # 0000:00:00, month 13...
        return None
    zone = _OFFSET_TEXT.match(_text(offset) or "")
    if zone is not None:
        sign, hours, minutes = zone.groups()
        if int(hours) <= 18 and int(minutes) < 60:
            return moment.isoformat() + f"{sign}{hours}:{minutes}"
    return moment.isoformat()


def _xmp_text(im: Image.Image) -> str:
    raw = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or b""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return raw[:1_000_000] if isinstance(raw, str) else ""


def _xmp_value(xmp: str, name: str) -> str | None:
    # Both serialisations: an attribute (name="...") and an element (<name>...</name>).
    pattern = rf'{re.escape(name)}\s*=\s*"([^"]{{1,64}})"|<{re.escape(name)}>([^<]{{1,64}})<'
    match = re.search(pattern, xmp)
    return (match.group(1) or match.group(2)).strip() if match else None


def _xmp_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return _exif_date(value, None)  # some writers use EXIF's colon form
    if moment.year < 1:
        return None
    return moment.isoformat()


def _taken_at(exif_ifd: dict[int, Any], xmp: str) -> str | None:
    original = _exif_date(
        exif_ifd.get(_DATE_ORIGINAL),
        exif_ifd.get(_OFFSET_ORIGINAL) or exif_ifd.get(_OFFSET),
    )
    if original is not None:
        return original
    digitized = _exif_date(exif_ifd.get(_DATE_DIGITIZED), exif_ifd.get(_OFFSET_DIGITIZED))
    if digitized is not None:
        return digitized
    for name in ("exif:DateTimeOriginal", "xmp:CreateDate"):
        found = _xmp_date(_xmp_value(xmp, name))
        if found is not None:
            return found
    return None


def _camera(ifd0: dict[int, Any], exif_ifd: dict[int, Any]) -> Camera | None:
    make, model = _text(ifd0.get(_MAKE)), _text(ifd0.get(_MODEL))
    lens = _text(exif_ifd.get(_LENS_MODEL))
    if lens is None and _text(exif_ifd.get(_LENS_MAKE)):
        lens = _text(exif_ifd.get(_LENS_MAKE))
    if make is None and model is None and lens is None:
        return None
    return Camera(make=make, model=model, lens=lens)


def _coordinate(
    value: object, ref: object, positive: str, negative: str, limit: float
) -> float | None:
    if not isinstance(value, tuple | list) or not 1 <= len(value) <= 3:
        return None
    parts = [_number(part) for part in value]  # degrees, minutes, seconds
    if any(part is None or part < 0 for part in parts):
        return None
    degrees = float(sum(p / 60**i for i, p in enumerate(parts) if p is not None))
    if degrees > limit:
        return None
    direction = (_text(ref) or positive).upper()[:1]  # a missing ref means N or E
    if direction not in (positive, negative):
        return None
    return round(degrees if direction == positive else -degrees, 7)


def _gps(gps_ifd: dict[int, Any]) -> Gps | None:
    lat = _coordinate(gps_ifd.get(2), gps_ifd.get(1), "N", "S", 90.0)
    lon = _coordinate(gps_ifd.get(4), gps_ifd.get(3), "E", "W", 180.0)
    if lat is None or lon is None:
        return None
    if lat in (-0.0, 0.0) and lon in (-0.0, 0.0):
        return None  # "Null Island": cameras write zeros when they have no fix
    alt = _number(gps_ifd.get(6))
    if alt is not None:
        ref = gps_ifd.get(5)
        # AltitudeRef is a BYTE: 1 means below sea level; some writers store b"\x01".
        below = ref[:1] == b"\x01" if isinstance(ref, bytes) else _integer(ref, 0, 1) == 1
        alt = round(-alt if below else alt, 3) if abs(alt) < 100_000 else None
    return Gps(lat=lat, lon=lon, alt=alt)


def _details(ifd0: dict[int, Any], exif_ifd: dict[int, Any]) -> ExifDetails:
    iso = exif_ifd.get(_ISO)
    return ExifDetails(
        focal_length=_positive(exif_ifd.get(_FOCAL), 100_000),
        aperture=_positive(exif_ifd.get(_FNUMBER), 1_000),
        exposure_time=_positive(exif_ifd.get(_EXPOSURE), 100_000),
        iso=_integer(iso[0] if isinstance(iso, tuple | list) and iso else iso, 1, 10_000_000),
        orientation=_integer(ifd0.get(_ORIENTATION), 1, 8),
        software=_text(ifd0.get(_SOFTWARE)),
    )
