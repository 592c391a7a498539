"""Opening images safely: a decompression bomb is shrunk before it is widened (measured as peak RSS in a
fresh process), huge ones are refused before decoding, and messages name the image, never a Python repr."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from studio.errors import InputError
from studio.images import MAX_PIXELS, open_image, shrink

ROOT = Path(__file__).resolve().parent.parent
# Opens a small image, then the file given, and prints the peak RSS after each (kB, Linux ru_maxrss).
PEAK = """
import io, json, resource, sys
sys.path.insert(0, sys.argv[2])
from PIL import Image
from studio.images import open_image
small = io.BytesIO(); Image.new("RGB", (256, 256), "red").save(small, "PNG")
open_image(small.getvalue(), name="small.png")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = open(sys.argv[1], "rb").read()
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(int(sys.argv[3])) as pool:  # several searches with the same bomb at once
    imgs = list(pool.map(lambda _: open_image(data, name="bomb.png"), range(int(sys.argv[3]))))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kb": before, "after_kb": after, "size": imgs[0].size, "mode": imgs[0].mode}))
"""


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12,000 x 12,000 1-bit PNG: tens of KB on disk, 144 M pixels."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    img = Image.new("1", (12_000, 12_000), 0)
    img.paste(1, (0, 0, 6_000, 12_000))  # half white: the shrunk copy must keep the picture
    img.save(path, optimize=True)
    return path


@pytest.mark.parametrize("at_once", [1, 4])
def test_a_1bit_bomb_costs_at_most_300_mb_over_a_small_image(bomb: Path, at_once: int):
    """One, or four at once (huge images decode one at a time: four reached 5.4 GB before)."""
    assert bomb.stat().st_size < 200_000
    out = subprocess.run([sys.executable, "-c", PEAK, str(bomb), str(ROOT), str(at_once)], capture_output=True,
                         text=True, timeout=120, check=True)
    figures = json.loads(out.stdout)
    extra_mb = (figures["after_kb"] - figures["before_kb"]) / 1024
    assert extra_mb <= 300, figures
    assert figures["size"] == [1024, 1024] and figures["mode"] == "RGB"


def test_shrinking_keeps_the_picture_in_every_mode():
    for mode, white in (("1", 1), ("L", 255), ("P", 1), ("RGBA", (255, 255, 255, 255)), ("I;16", 65535),
                        ("F", 1.0), ("CMYK", (0, 0, 0, 0))):
        black = {"CMYK": (0, 0, 0, 255), "RGBA": (0, 0, 0, 255)}.get(mode, 0)
        img = Image.new(mode, (4_000, 2_200), black)
        if mode == "P":
            img.putpalette([0, 0, 0, 255, 255, 255])
        img.paste(white, (0, 0, 2_000, 2_200))
        small = open_image(img)
        assert max(small.size) <= 1024 and small.mode == "RGB", mode
        left, right = small.getpixel((10, 10)), small.getpixel((small.width - 10, 10))
        assert min(left) > 200 and max(right) < 60, (mode, left, right)
    assert shrink(Image.new("RGB", (1_500, 900))).size == (1_500, 900)  # under 2x: thumbnail does the rest


def test_an_image_past_the_pixel_cap_is_refused_before_decoding(tmp_path: Path):
    side = int(MAX_PIXELS ** 0.5) + 100
    path = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(path)
    with pytest.raises(InputError, match=r"huge\.png is [\d,]+ x [\d,]+ pixels, \d+ MP; the studio reads images up to 150 MP"):
        open_image(path, name="huge.png")
    with pytest.raises(InputError, match="Save a smaller copy"):
        open_image(path.read_bytes(), name="huge.png")


def test_messages_name_the_image_not_a_python_object():
    for data in (b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40):
        with pytest.raises(InputError) as err:
            open_image(io.BytesIO(data), name="cat.png")
        assert "cat.png" in str(err.value) and "object at 0x" not in str(err.value)
