"""Hostile image folders: decompression bombs, truncated, empty and non-image files named like images.

linksim's choice (docs/errors.md): a bad file is an error naming it, never a silent skip.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from linksim.data.base import DatasetError
from linksim.data.image_folder import MAX_IMAGE_PIXELS, ImageFolder, read_image


def png_bytes(h=8, w=8, seed=0):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def with_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its header (IHDR) claiming another size, its checksum fixed: a tiny decompression bomb."""
    start = 8  # signature; then length (4), b"IHDR", data (13), crc (4)
    data = bytearray(png[start + 8:start + 8 + 13])
    data[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(data)) & 0xFFFFFFFF)
    return png[:start + 8] + bytes(data) + crc + png[start + 8 + 13 + 4:]


def folder(tmp_path, bad_name=None, bad_bytes=None, n=4):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(n):
        (d / f"img{i}.png").write_bytes(png_bytes(seed=i))
    if bad_name:
        (d / bad_name).write_bytes(bad_bytes)
    return d


def load_all(d):
    ds = ImageFolder(d, test_fraction=1.0)
    return ds.load("test")


def test_a_decompression_bomb_is_an_error_naming_the_file_and_the_limit(tmp_path):
    d = folder(tmp_path, "bomb.png", with_size(png_bytes(), 30000, 30000))
    with pytest.raises(DatasetError) as exc:
        load_all(d)
    msg = str(exc.value)
    assert "bomb.png" in msg and f"{MAX_IMAGE_PIXELS:,}" in msg and "30000x30000" in msg


def test_an_image_just_over_the_pixel_limit_is_refused_without_decoding_it(tmp_path):
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1
    f = tmp_path / "big.png"
    f.write_bytes(with_size(png_bytes(), side, side))
    with pytest.raises(DatasetError, match="big.png is .* pixels, more than the limit"):
        read_image(f, 3)


def test_pillows_bomb_error_beyond_twice_the_limit_becomes_a_clean_error(tmp_path, monkeypatch):
    import linksim.data.image_folder as mod

    monkeypatch.setattr(mod, "MAX_IMAGE_PIXELS", 10 ** 12)  # only Pillow's own check is left
    f = tmp_path / "bomb.png"
    f.write_bytes(with_size(png_bytes(), 60000, 60000))
    with pytest.raises(DatasetError, match="bomb.png.*(limit|bomb)"):
        read_image(f, 3)


def test_a_truncated_image_is_an_error_naming_the_file(tmp_path):
    full = png_bytes(seed=9)
    d = folder(tmp_path, "cut.png", full[:len(full) // 2])
    with pytest.raises(DatasetError) as exc:
        load_all(d)
    assert "cut.png" in str(exc.value) and "remove or replace" in str(exc.value)


def test_a_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, "JPEG")
    d = folder(tmp_path, "cut.jpg", buf.getvalue()[:150])
    with pytest.raises(DatasetError, match="cut.jpg"):
        load_all(d)


def test_a_zero_byte_file_is_an_error_saying_it_is_empty(tmp_path):
    d = folder(tmp_path, "empty.png", b"")
    with pytest.raises(DatasetError, match=r"empty.png: the file is empty \(0 bytes\)"):
        ImageFolder(d)


@pytest.mark.parametrize("content", [b"hello, I am text\n" * 10, bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n"])
def test_a_non_image_named_like_an_image_is_an_error_naming_it(tmp_path, content):
    d = folder(tmp_path, "notes.png", content)
    with pytest.raises(DatasetError) as exc:
        ImageFolder(d)
    assert "notes.png" in str(exc.value)


def test_a_non_image_in_a_class_subfolder_is_an_error_naming_it(tmp_path):
    d = tmp_path / "classes"
    for c in ("cat", "dog"):
        (d / c).mkdir(parents=True)
        for i in range(2):
            (d / c / f"{i}.png").write_bytes(png_bytes(seed=i))
    (d / "dog" / "bad.jpeg").write_text("<html>not a picture</html>")
    with pytest.raises(DatasetError, match="dog/bad.jpeg"):
        ImageFolder(d)


def test_files_without_an_image_extension_are_not_read(tmp_path):
    d = folder(tmp_path, "README.txt", b"just notes")
    x, _ = load_all(d)
    assert x.shape == (4, 8, 8, 3)


def test_a_run_on_a_folder_with_a_bad_image_exits_2_naming_the_file(tmp_path, capsys):
    from linksim.cli import main

    d = folder(tmp_path, "zero.png", b"")
    scen = tmp_path / "s.yaml"
    scen.write_text(f"""name: hostile_images
dataset: {{name: image_folder, test_size: 2, params: {{path: {d}, test_fraction: 0.5}}}}
snr_db: [10]
rate: {{bandwidth_ratio: 0.5}}
schemes: [{{type: uncoded}}]
plots: []
""")
    code = main(["run", str(scen), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "zero.png" in err and "Traceback" not in err
