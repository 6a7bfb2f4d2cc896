"""The activation page as a person sees it: opened in a real headless Chromium (driven by
Selenium), its text rendered, recoloured by the unit picker and the mode switch, and its
hover tooltip shown.

Skipped unless Chromium, its driver and Selenium are installed (Debian: ``apt-get install
chromium chromium-driver``; Selenium comes with the ``dev`` extra). ``.ci/run`` installs them.
"""

from __future__ import annotations

import re
import shutil

import pytest

from charrnn import CharRNNGenerator
from charrnn.report.activations import write_activation_page

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
    ),
]

TEXT = 'She said "no (not now)" twice.\nHe said "yes".\n' * 8
COLOURS = (
    "return Array.from(document.querySelectorAll('#text span'), "
    "s => getComputedStyle(s).backgroundColor)"
)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    gen = CharRNNGenerator(
        cell="lstm",
        hidden_size=8,
        num_layers=2,
        seq_length=16,
        batch_size=4,
        max_iter=2,
        validation_fraction=0,
        random_state=0,
    ).fit(TEXT)
    path = tmp_path_factory.mktemp("page") / "activations.html"
    write_activation_page(gen, TEXT, path, max_chars=200)
    return path


def _open(driver, path):
    driver.get(path.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1"
    )


def test_the_text_renders_and_the_unit_picker_recolours_it(browser, page):
    _open(browser, page)
    shown = TEXT[:200]
    rendered = browser.execute_script(
        "return Array.from(document.querySelectorAll('#text span'), s => s.textContent).join('')"
    )
    assert rendered == shown.replace("\n", "\u21b5\n")
    box = browser.find_element(By.ID, "text")
    assert box.is_displayed() and box.size["height"] > 50 and box.size["width"] > 300
    cut = browser.find_element(By.ID, "cut")
    assert cut.is_displayed() and "first 200" in cut.text

    before = browser.execute_script(COLOURS)
    assert len(before) == 200 and len(set(before)) > 10  # a unit's activations, not one colour
    unit = Select(browser.find_element(By.ID, "unit"))
    first = unit.first_selected_option.get_attribute("value")
    unit.select_by_index(3)
    assert unit.first_selected_option.get_attribute("value") != first
    after = browser.execute_script(COLOURS)
    assert sum(a != b for a, b in zip(before, after)) > 100

    state = Select(browser.find_element(By.ID, "state"))
    other = "hidden state h" if state.first_selected_option.text.endswith("c") else "cell state c"
    state.select_by_visible_text(other)
    cell = browser.execute_script(COLOURS)
    assert sum(a != b for a, b in zip(after, cell)) > 100

    Select(browser.find_element(By.ID, "mode")).select_by_value("surprise")
    surprise = browser.execute_script(COLOURS)
    for colour in surprise:  # white to orange: red >= green >= blue
        r, g, b = map(int, re.findall(r"\d+", colour)[:3])
        assert r >= g >= b, colour
    assert len(set(surprise)) > 10


def test_hovering_a_character_shows_the_five_likeliest_next(browser, page):
    _open(browser, page)
    span = browser.find_elements(By.CSS_SELECTOR, "#text span")[12]
    ActionChains(browser).move_to_element(span).perform()
    tip = browser.find_element(By.ID, "tip")
    WebDriverWait(browser, 5).until(lambda d: tip.is_displayed())
    rows = tip.find_elements(By.CSS_SELECTOR, "tr.next")
    assert len(rows) == 5
    shares = [float(re.search(r"([\d.]+)%", r.text).group(1)) for r in rows]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.5
    assert "surprise" in tip.text


def test_a_ranked_unit_button_picks_that_unit(browser, page):
    _open(browser, page)
    buttons = browser.find_elements(By.CSS_SELECTOR, "#ranking button")
    assert len(buttons) >= 8
    target = buttons[-1]
    label = target.text  # e.g. "L2 c5 +0.41"
    target.click()
    layer, kind, unit = re.match(r"L(\d) ([hc])(\d+)", label).groups()
    assert Select(browser.find_element(By.ID, "layer")).first_selected_option.text == (
        f"layer {layer}"
    )
    assert browser.find_element(By.ID, "unit").get_attribute("value") == unit
    state = Select(browser.find_element(By.ID, "state")).first_selected_option.text
    assert state.endswith(kind)
