"""EXIF/XMP metadata from real files written by Pillow (and pillow-heif), and fuzzing."""

from __future__ import annotations

import io
import random
import struct
import zlib
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from PIL import Image, TiffImagePlugin

from imgdex.config import ImagesConfig
from imgdex.imaging import decode_image
from imgdex.metadata import Camera, ExifDetails, Gps, PhotoMetadata, read_metadata

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
R = TiffImagePlugin.IFDRational


def jpeg(
    ifd0: dict[int, Any] | None = None,
    exif: dict[int, Any] | None = None,
    gps: dict[int, Any] | None = None,
    fmt: str = "JPEG",
    **save: Any,
) -> bytes:
    data = Image.Exif()
    for tag, value in (ifd0 or {}).items():
        data[tag] = value
    if exif:
        data.get_ifd(EXIF_IFD).update(exif)
    if gps:
        data.get_ifd(GPS_IFD).update(gps)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buffer, fmt, exif=data, **save)
    return buffer.getvalue()


def dms(value: float) -> tuple[R, R, R]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction((value - degrees - minutes / 60) * 3600).limit_denominator(10000)
    return R(degrees, 1), R(minutes, 1), R(seconds.numerator, seconds.denominator)


PHOTO_EXIF = {
    0x9003: "2019:07:14 18:32:05",
    0x9011: "+02:00",
    0x9004: "2019:07:14 18:32:06",
    0x829A: R(1, 250),
    0x829D: R(28, 10),
    0x8827: 200,
    0x920A: R(50, 1),
    0xA434: "EF50mm f/1.8 STM",
}


def test_a_full_camera_jpeg() -> None:
    data = jpeg(
        {0x010F: "Canon", 0x0110: "Canon EOS 80D", 0x0112: 6, 0x0131: "GIMP 2.10"},
        PHOTO_EXIF,
        {1: "S", 2: dms(33.8568), 3: "E", 4: dms(151.2153), 5: b"\x00", 6: R(5830, 100)},
    )
    meta = read_metadata(data)
    assert meta.taken_at == "2019-07-14T18:32:05+02:00"
    assert meta.camera == Camera(make="Canon", model="Canon EOS 80D", lens="EF50mm f/1.8 STM")
    assert meta.gps is not None
    assert meta.gps.lat == pytest.approx(-33.8568, abs=1e-4)
    assert meta.gps.lon == pytest.approx(151.2153, abs=1e-4)
    assert meta.gps.alt == pytest.approx(58.3)
    assert meta.exif == ExifDetails(
        focal_length=50.0,
        aperture=2.8,
        exposure_time=0.004,
        iso=200,
        orientation=6,
        software="GIMP 2.10",
    )
    # JSON-safe as it stands, and the same from a Pillow image as from bytes.
    assert msgspec.json.decode(msgspec.json.encode(meta), type=PhotoMetadata) == meta
    assert read_metadata(Image.open(io.BytesIO(data))) == meta


def test_west_and_below_sea_level() -> None:
    gps = {1: "N", 2: dms(31.5), 3: "W", 4: dms(35.5), 5: 1, 6: R(430, 1)}
    meta = read_metadata(jpeg(gps=gps))
    assert meta.gps == Gps(lat=31.5, lon=-35.5, alt=-430.0)


@pytest.mark.parametrize(
    ("exif", "expected"),
    [
        ({0x9003: "2020:01:02 03:04:05"}, "2020-01-02T03:04:05"),  # no offset: naive
        ({0x9003: "2020:01:02 03:04:05", 0x9010: "-05:30"}, "2020-01-02T03:04:05-05:30"),
        ({0x9003: "0000:00:00 00:00:00", 0x9004: "2021:05:06 07:08:09"}, "2021-05-06T07:08:09"),
        ({0x9004: "2021:05:06 07:08:09", 0x9012: "+09:00"}, "2021-05-06T07:08:09+09:00"),
        ({0x9003: "2020:13:40 25:61:61"}, None),
        ({0x9003: "2020:01:02 03:04:05", 0x9011: "+99:99"}, "2020-01-02T03:04:05"),
        ({0x9003: "    :  :     :  :  "}, None),
        ({}, None),
    ],
)
def test_taken_at(exif: dict[int, Any], expected: str | None) -> None:
    assert read_metadata(jpeg(exif=exif)).taken_at == expected


def test_ifd0_datetime_is_not_when_the_photo_was_taken() -> None:
    assert read_metadata(jpeg({0x0132: "2024:01:01 00:00:00"})).taken_at is None


def xmp_packet(body: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        f'xmlns:exif="http://ns.adobe.com/exif/1.0/" {body}/></rdf:RDF></x:xmpmeta>'
    ).encode()


def test_xmp_dates_when_exif_has_none() -> None:
    data = jpeg(xmp=xmp_packet('xmp:CreateDate="2018-03-04T05:06:07+01:00"'))
    assert read_metadata(data).taken_at == "2018-03-04T05:06:07+01:00"
    both = 'xmp:CreateDate="2018-03-04T05:06:07" exif:DateTimeOriginal="2017-01-01T10:00:00Z"'
    assert read_metadata(jpeg(xmp=xmp_packet(both))).taken_at == "2017-01-01T10:00:00+00:00"
    exif_wins = jpeg(exif={0x9003: "2016:02:03 04:05:06"}, xmp=xmp_packet(both))
    assert read_metadata(exif_wins).taken_at == "2016-02-03T04:05:06"
    assert read_metadata(jpeg(xmp=xmp_packet('xmp:CreateDate="yesterday"'))).taken_at is None


def test_no_metadata_and_not_an_image() -> None:
    assert read_metadata(jpeg()) == PhotoMetadata()
    assert read_metadata(b"definitely not an image") == PhotoMetadata()
    assert read_metadata(b"") == PhotoMetadata()


@pytest.mark.parametrize(
    ("gps", "expected"),
    [
        ({1: "N", 2: (R(1, 0), R(0, 1), R(0, 1)), 3: "E", 4: dms(10)}, None),  # zero denominator
        ({1: "N", 2: dms(95), 3: "E", 4: dms(10)}, None),  # latitude out of range
        ({1: "Q", 2: dms(45), 3: "E", 4: dms(10)}, None),  # unknown reference
        ({1: "N", 2: dms(45), 3: "N", 4: dms(10)}, None),  # a latitude ref on the longitude
        ({2: dms(45), 4: dms(10)}, Gps(lat=45.0, lon=10.0)),  # refs missing: N and E
        ({1: "N", 2: dms(0), 3: "E", 4: dms(0)}, None),  # no fix written as zeros
        ({1: "N", 2: dms(45), 3: "E", 4: dms(10), 6: R(1, 0)}, Gps(lat=45.0, lon=10.0)),
    ],
)
def test_bad_gps(gps: dict[int, Any], expected: Gps | None) -> None:
    assert read_metadata(jpeg(gps=gps)).gps == expected


def test_bad_values_become_none() -> None:
    exif = {0x829A: R(1, 0), 0x829D: R(0, 0), 0x8827: 0, 0x920A: R(-5, 1), 0xA434: b"\xff\xfe"}
    meta = read_metadata(jpeg({0x0112: 42, 0x010F: "\x00\x00"}, exif))
    assert meta.exif == ExifDetails()
    assert meta.camera == Camera(lens="\ufffd\ufffd")


def test_fuzzed_exif_never_raises() -> None:
    rng = random.Random(1234)
    base = jpeg({0x010F: "Make"}, PHOTO_EXIF, {1: "N", 2: dms(45), 3: "E", 4: dms(10)})
    start = base.index(b"Exif\x00\x00")
    values: list[Any] = [
        "0000:00:00 00:00:00", "9999:99:99 99:99:99", "", "\x00" * 50, "x" * 5000,
        2**31 - 1, -1, 0, R(0, 0), R(10**9, 1), float("nan"), b"\x00\xff" * 20,
        (R(1, 0),), (1, 2, 3, 4), "+25:00",
    ]  # fmt: skip
    for _ in range(300):
        if rng.random() < 0.5:
            # Random bytes inside the EXIF segment: a corrupt IFD structure.
            data = bytearray(base)
            for _ in range(rng.randint(1, 40)):
                data[rng.randrange(start + 6, start + 400)] = rng.randrange(256)
            meta = read_metadata(bytes(data))
        else:
            tags = [0x9003, 0x9011, 0x829A, 0x829D, 0x8827, 0x920A, 0xA434]
            exif = {rng.choice(tags): rng.choice(values) for _ in range(4)}
            gps_tags = [1, 2, 3, 4, 5, 6]
            gps = {rng.choice(gps_tags): rng.choice(values) for _ in range(4)}
            try:
                data = bytes(jpeg({0x0112: rng.choice(values)}, exif, gps))
            except Exception:  # Pillow cannot write this combination: nothing to read
                continue
            meta = read_metadata(data)
        msgspec.json.encode(meta)  # always JSON-safe (no NaN, no bytes)


def heic(**save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 120, 200)).save(buffer, "HEIF", **save)
    return buffer.getvalue()


def test_heic_with_exif_is_read_and_decoded() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15"
    exif.get_ifd(EXIF_IFD).update({0x9003: "2023:10:01 12:00:00", 0x9011: "-07:00"})
    exif.get_ifd(GPS_IFD).update({1: "N", 2: dms(37.3349), 3: "W", 4: dms(122.009)})
    data = heic(exif=exif.tobytes())
    assert data[4:12] in (b"ftypheic", b"ftypmif1")
    meta = read_metadata(data)
    assert meta.taken_at == "2023-10-01T12:00:00-07:00"
    assert meta.camera == Camera(make="Apple", model="iPhone 15")
    assert meta.gps is not None and meta.gps.lon == pytest.approx(-122.009, abs=1e-4)
    decoded = decode_image(data, ImagesConfig())
    assert decoded.format == "HEIF" and decoded.extension == "heic"
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.image.mode == "RGB"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_trailing_metadata(side: int, exif: Image.Exif | None, xmp: bytes | None) -> bytes:
    """A greyscale PNG whose EXIF and XMP follow the pixel data (the PNG spec allows it;
    Pillow reads such chunks only when it decodes the image)."""
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, "PNG")
    png = buffer.getvalue()
    assert png.endswith(_png_chunk(b"IEND", b""))
    trailer = b""
    if exif is not None:
        trailer += _png_chunk(b"eXIf", exif.tobytes())
    if xmp is not None:
        trailer += _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    return png[:-12] + trailer + png[-12:]


def test_png_metadata_after_the_pixels_is_read_without_decoding_them() -> None:
    # Decoding just to reach the EXIF cost a bomb's whole raster a second time, outside
    # the decode budget: six parallel uploads of 6000x6000 16-bit PNGs overshot it.
    exif = Image.Exif()
    exif[0x010F] = "Scanner Co"
    exif.get_ifd(EXIF_IFD).update({0x9003: "2015:05:06 07:08:09"})
    data = png_with_trailing_metadata(2000, exif, None)
    with Image.open(io.BytesIO(data)) as im:
        assert "exif" not in im.info  # really after the pixel data
        meta = read_metadata(im)
        assert im.tile, "the pixels were decoded to read the metadata"
    assert meta.taken_at == "2015-05-06T07:08:09"
    assert meta.camera == Camera(make="Scanner Co")
    assert read_metadata(data) == meta

    xmp = png_with_trailing_metadata(64, None, xmp_packet('xmp:CreateDate="2014-01-02T03:04:05"'))
    assert read_metadata(xmp).taken_at == "2014-01-02T03:04:05"
    # Cut after the EXIF chunk, or inside it: what can be read, never an error.
    assert read_metadata(data[:-12]).camera == Camera(make="Scanner Co")
    assert read_metadata(data[:-20]) == PhotoMetadata()
    # The image itself still decodes normally after its metadata was read.
    with Image.open(io.BytesIO(data)) as im:
        read_metadata(im)
        assert im.convert("RGB").size == (2000, 2000)
