"""Unit tests for imgdex.imaging: format policy, bombs, truncation, EXIF, draft, thumbnails."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgdex.config import ImagesConfig
from imgdex.errors import BadRequest, UnprocessableImage, UnsupportedMedia
from imgdex.imaging import decode_image, make_thumbnail
from imgdex.testing import image_bytes

POLICY = ImagesConfig()


@pytest.fixture(autouse=True)
def restore_pillow_limit() -> Iterator[None]:
    # decode_image sets Pillow's process-wide MAX_IMAGE_PIXELS from the policy; keep one
    # test's small limit from leaking into the next.
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def close_to(pixel: tuple[int, ...], expected: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, expected, strict=True))


def open_plain(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# --- formats -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "extension"),
    [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("GIF", "gif"), ("TIFF", "tiff"),
     ("BMP", "bmp")],
)  # fmt: skip
def test_decode_formats(fmt: str, extension: str) -> None:
    data = encode(Image.new("RGB", (64, 48), (30, 40, 220)), fmt)
    decoded = decode_image(data, POLICY)
    assert decoded.format == fmt
    assert decoded.extension == extension
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (64, 48)
    assert close_to(decoded.image.getpixel((32, 24)), (30, 40, 220))


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in ((220, 30, 30), (30, 40, 220))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    decoded = decode_image(buf.getvalue(), POLICY)
    assert decoded.format == "GIF"
    assert (decoded.width, decoded.height) == (40, 30)
    assert close_to(decoded.image.getpixel((20, 15)), (220, 30, 30))


def test_rgba_is_composited_onto_white() -> None:
    im = Image.new("RGBA", (20, 10), (0, 0, 0, 0))  # transparent black...
    im.paste((200, 0, 0, 255), (10, 0, 20, 10))  # ...beside opaque red
    decoded = decode_image(encode(im, "PNG"), POLICY)
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((2, 5)) == (255, 255, 255)
    assert decoded.image.getpixel((15, 5)) == (200, 0, 0)


def test_half_transparent_is_blended_with_white() -> None:
    decoded = decode_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), "PNG"), POLICY)
    assert close_to(decoded.image.getpixel((1, 1)), (127, 127, 127), tol=3)


def test_palette_with_transparency_onto_white() -> None:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0])
    im.paste(1, (4, 0, 8, 8))
    decoded = decode_image(encode(im, "PNG", transparency=0), POLICY)
    assert decoded.image.getpixel((1, 1)) == (255, 255, 255)
    assert decoded.image.getpixel((6, 1)) == (255, 0, 0)


def test_greyscale_and_cmyk_become_rgb() -> None:
    grey = decode_image(encode(Image.new("L", (8, 8), 100), "PNG"), POLICY)
    assert grey.image.mode == "RGB" and grey.image.getpixel((0, 0)) == (100, 100, 100)
    cmyk = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), POLICY)
    assert cmyk.image.mode == "RGB"
    assert close_to(cmyk.image.getpixel((4, 4)), (255, 0, 0))


def test_16_bit_png_keeps_its_tones() -> None:
    # A 16-bit greyscale ramp from black to white: models must see a ramp too, not an
    # image clipped to white wherever the 16-bit value exceeds 255.
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    im = Image.fromarray(ramp)
    assert im.mode.startswith("I;16")
    decoded = decode_image(encode(im, "PNG"), POLICY)
    pixels = np.asarray(decoded.image)[..., 0].astype(float)
    assert pixels[:, 0].mean() < 10  # the black end stays black
    assert pixels[:, -1].mean() > 245  # the white end is white
    assert 100 < pixels.mean() < 155  # a ramp averages mid-grey, not near-white


# --- refusals ----------------------------------------------------------------------


def test_empty_is_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        decode_image(b"", POLICY)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        b"hello, this is plain text and not an image\n" * 10,
        b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'></svg>",
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    ],
    ids=["random", "text", "svg", "pdf"],
)
def test_non_images_are_unsupported_media(data: bytes) -> None:
    with pytest.raises(UnsupportedMedia) as info:
        decode_image(data, POLICY)
    assert info.value.status == 415


def test_format_not_in_policy_is_refused() -> None:
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    jpeg = encode(Image.new("RGB", (8, 8)), "JPEG")
    only_jpeg = ImagesConfig(formats=("JPEG",))
    with pytest.raises(UnsupportedMedia):
        decode_image(png, only_jpeg)
    assert decode_image(jpeg, only_jpeg).format == "JPEG"
    # Formats Pillow could open but the default policy does not list (here: PPM).
    with pytest.raises(UnsupportedMedia):
        decode_image(encode(Image.new("RGB", (8, 8)), "PPM"), POLICY)


def test_truncated_jpeg_is_corrupt() -> None:
    data = encode(noise(800, 600), "JPEG", quality=90)
    with pytest.raises(UnprocessableImage) as info:
        decode_image(data[: len(data) // 2], POLICY)
    assert info.value.code == "corrupt_image"
    assert info.value.status == 422


def test_truncated_png_is_corrupt() -> None:
    data = encode(noise(300, 200), "PNG")
    with pytest.raises(UnprocessableImage) as info:
        decode_image(data[: len(data) // 2], POLICY)
    assert info.value.code == "corrupt_image"


def _png(width: int, height: int) -> bytes:
    """A valid bilevel (mode "1") all-black PNG, built without allocating the pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(6)
    body = b"".join(packer.compress(row * 1000) for _ in range(height // 1000))
    body += packer.compress(row * (height % 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    data = _png(20_000, 20_000)
    assert len(data) < 100_000  # tiny on disk, 400 M pixels
    return data


def test_sanity_of_hand_built_png() -> None:
    im = open_plain(_png(1000, 30))
    assert (im.mode, im.size) == ("1", (1000, 30))


def test_decompression_bomb_with_default_limit(bomb_png: bytes) -> None:
    with pytest.raises(UnprocessableImage) as info:
        decode_image(bomb_png, POLICY)
    assert info.value.code == "image_too_large"
    assert info.value.status == 422


def test_just_above_the_limit_is_refused() -> None:
    # Between the limit and twice it Pillow only warns: the policy must still refuse.
    data = encode(Image.new("L", (15, 10)), "PNG")
    with pytest.raises(UnprocessableImage) as info:
        decode_image(data, ImagesConfig(max_pixels=100))
    assert info.value.code == "image_too_large"


def test_small_image_over_configured_limit() -> None:
    data = encode(Image.new("RGB", (20, 20)), "PNG")
    with pytest.raises(UnprocessableImage) as info:
        decode_image(data, ImagesConfig(max_pixels=100))
    assert info.value.code == "image_too_large"
    assert decode_image(data, ImagesConfig(max_pixels=400)).width == 20  # at the limit: fine


# --- EXIF, draft, thumbnails -------------------------------------------------------


def test_exif_orientation_swaps_reported_size() -> None:
    data = image_bytes("red", (64, 48), "JPEG", exif_orientation=6)
    decoded = decode_image(data, POLICY)
    assert (decoded.width, decoded.height) == (48, 64)
    assert decoded.image.size == (48, 64)
    thumb = open_plain(make_thumbnail(decoded, 256, 85))
    assert thumb.height > thumb.width


def test_exif_orientation_rotates_pixels() -> None:
    im = Image.new("RGB", (64, 48), (30, 40, 220))
    im.paste((220, 30, 30), (0, 0, 16, 48))  # red band on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: left goes to the top
    decoded = decode_image(encode(im, "JPEG", exif=exif, quality=95), POLICY)
    assert close_to(decoded.image.getpixel((24, 4)), (220, 30, 30), tol=30)
    assert close_to(decoded.image.getpixel((24, 60)), (30, 40, 220), tol=30)


def test_exif_orientation_without_swap() -> None:
    decoded = decode_image(image_bytes("red", (64, 48), "JPEG", exif_orientation=3), POLICY)
    assert (decoded.width, decoded.height) == (64, 48)


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    x = np.linspace(0, 255, 4000, dtype=np.float32)
    y = np.linspace(0, 255, 3000, dtype=np.float32)
    rgb = np.stack(np.broadcast_arrays(x[None, :], y[:, None], 128.0), axis=-1)
    return encode(Image.fromarray(rgb.astype(np.uint8)), "JPEG", quality=80)


def test_jpeg_draft_decodes_reduced_but_not_below_min_side(large_jpeg: bytes) -> None:
    decoded = decode_image(large_jpeg, POLICY)
    assert (decoded.width, decoded.height) == (4000, 3000)  # reported at full size
    w, h = decoded.image.size
    assert w < 4000 and h < 3000  # decoded at reduced scale
    assert min(w, h) >= POLICY.decode_min_side
    assert abs(w / h - 4 / 3) < 0.01


def test_jpeg_draft_respects_larger_min_side(large_jpeg: bytes) -> None:
    decoded = decode_image(large_jpeg, ImagesConfig(decode_min_side=2000))
    assert min(decoded.image.size) >= 2000


def test_small_min_side_decodes_smaller(large_jpeg: bytes) -> None:
    decoded = decode_image(large_jpeg, ImagesConfig(decode_min_side=256))
    assert 256 <= min(decoded.image.size) < 1024
    assert (decoded.width, decoded.height) == (4000, 3000)


@pytest.mark.parametrize("size", [(1000, 500), (300, 900), (256, 256), (40, 30), (2000, 20)])
def test_thumbnail_fits_and_keeps_aspect(size: tuple[int, int]) -> None:
    decoded = decode_image(encode(noise(*size), "PNG"), POLICY)
    data = make_thumbnail(decoded, 256, 85)
    assert data[:3] == b"\xff\xd8\xff"
    thumb = open_plain(data)
    assert thumb.format == "JPEG"
    assert thumb.mode == "RGB"
    assert thumb.width <= 256 and thumb.height <= 256
    if max(size) > 256:
        assert max(thumb.size) == 256
    else:
        assert thumb.size == size  # never enlarged
    scale = min(1.0, 256 / max(size))
    assert abs(thumb.width - size[0] * scale) <= 1  # aspect kept, up to rounding
    assert abs(thumb.height - size[1] * scale) <= 1


def test_thumbnail_of_draft_decoded_jpeg(large_jpeg: bytes) -> None:
    thumb = open_plain(make_thumbnail(decode_image(large_jpeg, POLICY), 256, 85))
    assert thumb.size == (256, 192)


def test_thumbnail_of_transparent_png_is_white_background() -> None:
    decoded = decode_image(encode(Image.new("RGBA", (300, 300), (0, 0, 0, 0)), "PNG"), POLICY)
    thumb = open_plain(make_thumbnail(decoded, 128, 85))
    assert close_to(thumb.getpixel((64, 64)), (255, 255, 255), tol=2)
