"""Take the README's screenshot of a training report: headless chromium (tests/browser.py),
the page at half size, scrolled to the heading of its first plot.

    .venv/bin/python docs/img/screenshot.py data/report/index.html docs/img/report.png
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.browser import chromium


def main(report: Path, out: Path) -> None:
    with chromium(600, 900, "--hide-scrollbars") as browser:
        browser.get(report.resolve().as_uri())
        browser.execute_script("document.body.style.zoom = '0.5'")
        first_plot = browser.find_element("css selector", "img")
        browser.execute_script(
            """let e = arguments[0];
            while (e && !/^H[1-3]$/.test(e.tagName))
                e = e.previousElementSibling || e.parentElement;
            (e || arguments[0]).scrollIntoView();""",
            first_plot,
        )
        time.sleep(0.5)
        png = browser.get_screenshot_as_png()
    # 128 colours keep the PNG small for the README (Pillow comes with matplotlib)
    from PIL import Image

    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128).save(out, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
