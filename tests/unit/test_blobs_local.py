"""Unit tests for ids, files and the local blob store: checks, atomic writes, the tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from imgdex.blobs import LocalBlobStore
from imgdex.errors import BadRequest
from imgdex.files import atomic_write
from imgdex.ids import ID_LENGTH, check_id, check_name, image_id

ID = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- ids and names -----------------------------------------------------------------


def test_image_id_is_first_32_hex_of_sha256() -> None:
    full = hashlib.sha256(b"pixels").hexdigest()
    assert image_id(full) == full[:32]
    assert len(image_id(full)) == ID_LENGTH == 32
    assert check_id(image_id(full)) == full[:32]


def test_check_id_accepts_lowercase_hex() -> None:
    assert check_id(ID) == ID
    assert check_id("0" * 32) == "0" * 32


@pytest.mark.parametrize(
    "value",
    [
        ID.upper(),
        "0123456789ABCDEF0123456789abcdef",
        ID[:31],
        ID + "0",
        "",
        "../..",
        "../../" + ID[:26],
        ID[:30] + "/x",
        ID[:31] + "g",
        ID[:31] + "\n",
        ID + "\n",
        "٠١٢٣٤٥٦٧٨٩" + ID[:22],  # Arabic-Indic digits: unicode \d, not hex
        "\uff10" * 32,  # fullwidth zeros
        ID[:31] + "é",
        " " + ID[:31],
        "0x" + ID[:30],
    ],
)
def test_check_id_rejects(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_id(value)
    assert info.value.code == "invalid_id"
    assert info.value.status == 400


def test_check_id_message_is_bounded() -> None:
    with pytest.raises(BadRequest) as info:
        check_id("x" * 10_000)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    "value", ["caption", "vlm_caption", "siglip2_image_v1", "a", "a.b-c_d", "A9", "x" * 64]
)
def test_check_name_accepts(value: str) -> None:
    assert check_name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "..",
        ".hidden",
        "-flag",
        "a..b",
        "../etc",
        "a/b",
        "a\\b",
        "a b",
        "x" * 65,
        "naïve",
        "name\n",
        "a\x00b",
    ],
)
def test_check_name_rejects(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_name(value, "method")
    assert info.value.code == "invalid_name"
    assert "method" in str(info.value)


# --- atomic_write ------------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write(target, b"second, longer", fsync=False)
    assert target.read_bytes() == b"second, longer"
    atomic_write(target, b"")
    assert target.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no temp files left


def test_atomic_write_failure_leaves_old_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_atomic_write_into_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "file.bin", b"x")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_a_hard_linked_file_without_touching_the_link(
    tmp_path: Path,
) -> None:
    # A rename gives the path a new inode: readers holding the old file see the old bytes.
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")
    with open(target, "rb") as reader:
        atomic_write(target, b"new")
        assert reader.read() == b"old"
    assert target.read_bytes() == b"new"


# --- the storage tree --------------------------------------------------------------


@pytest.fixture
def storage(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "storage")


def test_storage_creates_its_directories(tmp_path: Path) -> None:
    storage = LocalBlobStore(tmp_path / "a" / "storage")
    assert storage.root.is_dir() and storage.tmp.is_dir() and storage.trash.is_dir()
    LocalBlobStore(tmp_path / "a" / "storage")  # opening again is fine


def test_put_image_layout(storage: LocalBlobStore) -> None:
    assert storage.put_image(ID, "image.png", b"png bytes", b"jpeg bytes") is True
    directory = storage.root / "01" / "23" / "456789abcdef0123456789abcdef"
    assert storage.image_dir(ID) == directory
    assert (directory / "image.png").read_bytes() == b"png bytes"
    assert (directory / "thumbnail.jpg").read_bytes() == b"jpeg bytes"
    assert storage.original(ID, "image.png") == directory / "image.png"
    assert storage.thumbnail(ID) == directory / "thumbnail.jpg"
    assert sorted(p.name for p in directory.iterdir()) == ["image.png", "thumbnail.jpg"]
    assert list(storage.tmp.iterdir()) == []


def test_put_image_twice_is_a_no_op(storage: LocalBlobStore) -> None:
    assert storage.put_image(ID, "image.png", b"one", b"thumb")
    assert storage.put_image(ID, "image.png", b"two", b"thumb2") is False
    assert storage.original(ID, "image.png").read_bytes() == b"one"
    assert list(storage.tmp.iterdir()) == []


def test_put_image_repairs_half_present_directory(storage: LocalBlobStore) -> None:
    storage.put_image(ID, "image.png", b"png", b"thumb")
    storage.put_vector(ID, "toy_v1", "image", np.ones(4, np.float32))
    storage.thumbnail(ID).unlink()  # a lost thumbnail
    assert storage.put_image(ID, "image.png", b"png", b"thumb again") is True
    assert storage.thumbnail(ID).read_bytes() == b"thumb again"
    # What the directory already held is kept.
    assert storage.read_vector(ID, "toy_v1", "image").tolist() == [1, 1, 1, 1]
    assert list(storage.tmp.iterdir()) == []


def test_put_image_two_ids_sharing_a_prefix(storage: LocalBlobStore) -> None:
    twin = ID[:4] + "f" * 28
    storage.put_image(ID, "image.jpg", b"a", b"ta")
    storage.put_image(twin, "image.jpg", b"b", b"tb")
    assert storage.image_dir(ID).parent == storage.image_dir(twin).parent
    assert storage.original(ID, "image.jpg").read_bytes() == b"a"
    assert storage.original(twin, "image.jpg").read_bytes() == b"b"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_vector_roundtrip(storage: LocalBlobStore, dtype: type) -> None:
    vector = np.linspace(-1, 1, 384).astype(dtype)
    storage.put_image(ID, "image.png", b"x", b"t")
    assert storage.put_vector(ID, "bge_text_v1", "caption", vector)
    path = storage.vector_path(ID, "bge_text_v1", "caption")
    assert path == storage.image_dir(ID) / "embedding" / "bge_text_v1" / "caption.npy"
    back = storage.read_vector(ID, "bge_text_v1", "caption")
    assert back.dtype == np.float32
    assert back.shape == (384,)
    np.testing.assert_allclose(back, vector.astype(np.float32))
    # Overwriting replaces, and leaves no temp files beside the vector.
    storage.put_vector(ID, "bge_text_v1", "caption", np.zeros(384, np.float32))
    assert not storage.read_vector(ID, "bge_text_v1", "caption").any()
    assert [p.name for p in path.parent.iterdir()] == ["caption.npy"]


def test_read_missing_vector_raises_oserror(storage: LocalBlobStore) -> None:
    with pytest.raises(OSError):
        storage.read_vector(ID, "idx", "image")


def test_description_files(storage: LocalBlobStore) -> None:
    storage.put_description(ID, "caption", "a red bus, 東京")
    assert storage.description_path(ID, "caption").read_text("utf-8") == "a red bus, 東京"
    storage.put_vector(ID, "words_v1", "caption", np.ones(3, np.float32))
    storage.put_vector(ID, "other_v1", "caption", np.ones(3, np.float32))
    storage.put_vector(ID, "words_v1", "ocr", np.ones(3, np.float32))
    storage.remove_description(ID, "caption")
    assert not storage.description_path(ID, "caption").exists()
    assert not storage.vector_path(ID, "words_v1", "caption").exists()
    assert not storage.vector_path(ID, "other_v1", "caption").exists()
    assert storage.vector_path(ID, "words_v1", "ocr").exists()
    storage.remove_description(ID, "caption")  # removing twice is fine


def test_trash_and_empty_trash(storage: LocalBlobStore) -> None:
    storage.put_image(ID, "image.png", b"a", b"t")
    storage.put_image(OTHER, "image.png", b"b", b"t")
    storage.trash_image(ID)
    assert not storage.image_dir(ID).exists()
    assert storage.image_dir(OTHER).exists()
    assert storage.trashed_ids() == {ID}
    # The trashed directory still holds the files until the trash is emptied.
    assert any(p.name == "image.png" for p in all_files(storage.trash))
    storage.trash_image(ID)  # already gone: nothing happens
    storage.trash_image(OTHER)
    assert storage.trashed_ids() == {ID, OTHER}
    storage.empty_trash(ID)
    assert storage.trashed_ids() == {OTHER}
    storage.empty_trash()
    assert storage.trashed_ids() == set()
    assert list(storage.trash.iterdir()) == []


def test_trash_same_id_twice_keeps_both(storage: LocalBlobStore) -> None:
    # Uploaded, deleted, uploaded again, deleted again before the trash was emptied.
    storage.put_image(ID, "image.png", b"a", b"t")
    storage.trash_image(ID)
    storage.put_image(ID, "image.png", b"a", b"t")
    storage.trash_image(ID)
    assert len(list(storage.trash.iterdir())) == 2
    assert storage.trashed_ids() == {ID}
    storage.empty_trash(ID)
    assert list(storage.trash.iterdir()) == []


def test_clean_tmp(storage: LocalBlobStore) -> None:
    (storage.tmp / f"{ID}.abcd1234").mkdir()
    (storage.tmp / f"{ID}.abcd1234" / "image.png").write_bytes(b"half")
    (storage.tmp / "stray.tmp").write_bytes(b"x")
    assert storage.clean_tmp() == 2
    assert list(storage.tmp.iterdir()) == []
    assert storage.clean_tmp() == 0


def test_iter_image_dirs(storage: LocalBlobStore) -> None:
    ids = sorted([ID, OTHER, ID[:4] + "e" * 28])
    for id_ in ids:
        storage.put_image(id_, "image.png", b"x", b"t")
    storage.trash_image(OTHER)
    (storage.tmp / "junk").mkdir()
    (storage.root / "zz").mkdir()  # not hex
    (storage.root / "01" / "23" / "short").mkdir()  # not an id
    (storage.root / "01" / "23" / ("a" * 28 + ".tmp")).write_bytes(b"")  # a file
    (storage.root / "01" / "23" / ("A" * 28)).mkdir()  # uppercase: not an id
    found = dict(storage.iter_image_dirs())
    assert set(found) == {ID, ID[:4] + "e" * 28}
    for id_, directory in found.items():
        assert directory == storage.image_dir(id_)
        assert directory.is_dir()


def test_iter_image_dirs_empty(storage: LocalBlobStore) -> None:
    assert list(storage.iter_image_dirs()) == []


def test_put_image_does_not_follow_staging_name_collisions(storage: LocalBlobStore) -> None:
    # Staging directories are unique per call: a leftover from a crash does not block.
    (storage.tmp / f"{ID}.leftover").mkdir()
    assert storage.put_image(ID, "image.png", b"x", b"t")
    assert storage.original(ID, "image.png").read_bytes() == b"x"
    assert [p.name for p in storage.tmp.iterdir()] == [f"{ID}.leftover"]


def test_stored_files_are_complete_after_put(storage: LocalBlobStore) -> None:
    payload = os.urandom(1 << 20)
    storage.put_image(ID, "image.bin", payload, b"t")
    assert storage.original(ID, "image.bin").read_bytes() == payload


def test_iter_image_dirs_skips_stray_files_at_every_level(storage: LocalBlobStore) -> None:
    # Start-up reconciliation walks the tree: a stray file whose name looks like a
    # prefix directory (copied in by hand, left by a tool) must not crash it.
    storage.put_image(ID, "image.png", b"x", b"t")
    (storage.root / "ef").write_bytes(b"")
    (storage.root / "01" / "ab").write_bytes(b"")
    assert dict(storage.iter_image_dirs()) == {ID: storage.image_dir(ID)}


def test_put_vector_never_recreates_a_deleted_image_directory(storage: LocalBlobStore) -> None:
    """A late background vector for an image hard-deleted meanwhile: no error, and no
    directory resurrected (it held an orphan .npy before)."""
    id_ = image_id(hashlib.sha256(b"late").hexdigest())
    storage.put_image(id_, "image.png", b"x", b"t")
    assert storage.put_vector(id_, "idx", "image", np.ones(4, dtype=np.float32))
    storage.trash_image(id_)
    storage.empty_trash(id_)
    assert not storage.put_vector(id_, "idx", "image", np.ones(4, dtype=np.float32))
    assert not storage.image_dir(id_).exists()


def test_put_vector_races_hard_delete_without_errors(storage: LocalBlobStore) -> None:
    """Writers and a deleter (trash + re-upload) on one image at once: every write
    either lands or reports the directory gone; no temp file is left behind."""
    import threading

    id_ = image_id(hashlib.sha256(b"race").hexdigest())
    storage.put_image(id_, "image.png", b"x", b"t")
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(n: int) -> None:
        try:
            while not stop.is_set():
                storage.put_vector(id_, f"idx{n % 2}", "image", np.ones(8, dtype=np.float32))
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(50):
            storage.trash_image(id_)
            storage.empty_trash(id_)
            storage.put_image(id_, "image.png", b"x", b"t")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert not list(storage.image_dir(id_).glob("**/.*.tmp"))
    assert (storage.image_dir(id_) / "image.png").read_bytes() == b"x"


def test_clean_stray_tmp_removes_leftovers_of_a_killed_writer_only(tmp_path: Path) -> None:
    first = LocalBlobStore(tmp_path / "storage")
    id_ = image_id(hashlib.sha256(b"tmp").hexdigest())
    first.put_image(id_, "image.png", b"x", b"t")
    folder = first.vector_path(id_, "idx", "image").parent
    folder.mkdir(parents=True)
    stale = folder / ".image.npy.1234abcd.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (1, 1))  # written before this process started
    restarted = LocalBlobStore(tmp_path / "storage")
    in_flight = folder / ".image.npy.5678abcd.tmp"
    in_flight.write_bytes(b"now")  # a write of the running process: left alone
    assert restarted.clean_stray_tmp() == 1
    assert not stale.exists() and in_flight.exists()
