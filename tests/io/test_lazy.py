"""Lazy views (io/lazy.py): unreadable inputs raise io's one image-read error type."""

import pytest

from unetkit.io.images import ImageReadError
from unetkit.io.lazy import open_image


def test_unreadable_inputs_raise_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        open_image(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ImageReadError, match=r"bad\.tif: cannot read TIFF"):
        open_image(bad)
    other = tmp_path / "x.png"
    other.write_bytes(b"")
    with pytest.raises(ImageReadError, match="cannot stream this file type"):
        open_image(other)
