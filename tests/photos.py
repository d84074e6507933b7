"""Real photo files with EXIF (dates, cameras, GPS) for the organise tests."""

from __future__ import annotations

import io
from fractions import Fraction

from PIL import Image, TiffImagePlugin

from imgdex.imaging import register_heif

register_heif()

R = TiffImagePlugin.IFDRational
EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def dms(value: float) -> tuple[R, R, R]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction((value - degrees - minutes / 60) * 3600).limit_denominator(10000)
    return R(degrees, 1), R(minutes, 1), R(seconds.numerator, seconds.denominator)


def photo(
    *,
    taken: str | None = None,
    offset: str | None = None,
    make: str | None = None,
    model: str | None = None,
    gps: tuple[float, float, float] | None = None,
    color: tuple[int, int, int] = (200, 120, 40),
    fmt: str = "JPEG",
) -> bytes:
    """A 64x48 photo; `taken` as EXIF writes it (``2019:07:14 18:32:05``)."""
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if taken:
        exif.get_ifd(EXIF_IFD)[0x9003] = taken
    if offset:
        exif.get_ifd(EXIF_IFD)[0x9011] = offset
    if gps:
        lat, lon, alt = gps
        exif.get_ifd(GPS_IFD).update(
            {
                1: "N" if lat >= 0 else "S",
                2: dms(lat),
                3: "E" if lon >= 0 else "W",
                4: dms(lon),
                5: b"\x00" if alt >= 0 else b"\x01",
                6: R(int(abs(alt) * 10), 10),
            }
        )
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()
