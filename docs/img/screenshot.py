"""Take the README's screenshot of a training report: headless chromium (tests/browser.py),
the report's first screen (verdict, facts, the comparison with the points) at 60% size.

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
    with chromium(640, 900, "--hide-scrollbars") as browser:
        browser.get(report.resolve().as_uri())
        browser.execute_script("document.body.style.zoom = '0.6'")
        time.sleep(0.5)
        png = browser.get_screenshot_as_png()
    # 128 colours keep the PNG small for the README (Pillow comes with matplotlib)
    from PIL import Image

    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128).save(out, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
