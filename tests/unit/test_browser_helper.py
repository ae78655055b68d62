"""The browser helper itself can fail: a missing image is reported with width 0."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.browser import chromium, images

# a 1x1 PNG
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.mark.browser
def test_a_missing_image_is_reported_broken(tmp_path: Path) -> None:
    (tmp_path / "pixel.png").write_bytes(PIXEL)
    page = tmp_path / "page.html"
    page.write_text('<h1>t</h1><img src="pixel.png"><img src="gone.png">', encoding="utf-8")
    with chromium() as browser:
        browser.get(page.as_uri())
        widths = {Path(image["src"]).name: image["width"] for image in images(browser)}
    assert widths == {"pixel.png": 1, "gone.png": 0}
