"""Write a model's activation page and photograph it in headless Chromium (the README's figure).

The page is :func:`charrnn.report.activations.write_activation_page`; the browser is Debian's
``chromium`` and ``chromium-driver`` driven by Selenium (the ``dev`` extra). The unit shown is
the one the ranking lists first for ``--property`` (or ``--unit LAYER,STATE,UNIT``), and a
character is hovered so the tooltip of likely next characters is in the picture.

    .venv/bin/python scripts/activation_screenshot.py --model /tmp/shakes.npz \\
        --text sonnet.txt --png docs/activations.png --property "position in line"
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from charrnn import load
from charrnn.report.activations import PROPERTIES, write_activation_page


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--text", type=Path, required=True, help="text file the model reads")
    ap.add_argument("--png", type=Path, required=True, help="screenshot to write")
    ap.add_argument("--html", type=Path, default=None, help="keep the page here too")
    ap.add_argument("--max-chars", type=int, default=1200)
    ap.add_argument("--property", choices=PROPERTIES, default="inside quotes")
    ap.add_argument("--unit", default=None, help="LAYER,STATE,UNIT (0-based) instead")
    ap.add_argument("--hover", type=int, default=40, help="character to hover (index)")
    ap.add_argument("--size", default="1100,820", help="window width,height in pixels")
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    gen = load(args.model)
    text = args.text.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        html = args.html or Path(tmp) / "activations.html"
        summary = write_activation_page(gen, text, html, max_chars=args.max_chars)
        print(f"page: {summary.path} ({summary.shown_chars:,} of {summary.total_chars:,} chars)")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        options.add_argument(f"--window-size={args.size}")
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get(Path(html).resolve().as_uri())
            WebDriverWait(driver, 30).until(
                lambda d: d.execute_script("return document.body.dataset.ready") == "1"
            )
            if args.unit:
                layer, state, unit = (int(x) for x in args.unit.split(","))
            else:
                row = driver.execute_script(
                    "return D.ranking.find(r => r.property === arguments[0]).units[0]",
                    args.property,
                )
                layer, state, unit, r = row
                print(f"unit: layer {layer + 1}, state {state}, unit {unit}, r = {r:+.3f}")
            driver.execute_script(
                "pick(arguments[0], arguments[1], arguments[2])", layer, state, unit
            )
            span = driver.find_elements(By.CSS_SELECTOR, "#text span")[args.hover]
            ActionChains(driver).move_to_element(span).perform()
            args.png.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.png))
            print(f"wrote {args.png}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
