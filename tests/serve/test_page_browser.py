"""The page in a real browser: headless Chromium (Selenium) against a real `finsent serve` process.

Skipped, with the reason, when Chromium, chromedriver or Selenium is absent (Debian: apt-get install chromium
chromium-driver; ``.ci/run`` installs them). The screenshot goes to ``$FINSENT_TEST_ARTIFACTS`` (else the
test's temporary folder) as ``serve_page.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HANG_GUARD_S
from tests.serve.conftest import ServeProcess

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
HEADLINES = ["Shares of Halvard Telecom fell 8% after a profit warning", "Nordbank raises its dividend and beats estimates"]


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1100,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(serve_model: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess("--model", str(serve_model), cwd=tmp_path)
    try:
        yield proc
    finally:
        proc.kill()


def test_page_classifies_and_explains_in_a_real_browser(browser: Any, server: ServeProcess, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, HANG_GUARD_S)  # a hang guard, not a budget
    browser.get(server.url + "/")
    box = wait.until(ec.element_to_be_clickable((By.ID, "texts")))
    wait.until(lambda d: "Model " in d.find_element(By.ID, "model").text)  # /health answered
    assert not browser.find_element(By.ID, "target").is_displayed()  # a sentence-level model takes no target
    icon = browser.execute_async_script(
        "fetch(document.querySelector('link[rel=icon]').href).then((r) => arguments[0](r.status + ' ' + r.headers.get('content-type')))"
    )  # fmt: skip
    assert icon == "200 image/svg+xml", icon
    box.send_keys(HEADLINES[0], Keys.ENTER, HEADLINES[1])
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results tbody tr")) == 2)
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td.text").text for r in rows] == HEADLINES
    labels = [r.find_element(By.CSS_SELECTOR, ".label").text for r in rows]
    assert all(label in ("negative", "neutral", "positive") for label in labels), labels
    scores = [r.find_element(By.CSS_SELECTOR, ".score").text for r in rows]  # the signed score beside each label
    api = browser.execute_async_script(
        "fetch('/v1/predict', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({texts: arguments[0]})})"
        ".then((r) => r.json()).then((b) => arguments[1](b.results.map((row) => row.score)))",
        HEADLINES,
    )  # fmt: skip
    assert scores == [("+" if s >= 0 else "\u2212") + f"{abs(s):.2f}" for s in api], (scores, api)

    rows[1].send_keys(Keys.ENTER)  # keyboard: a focused row opens its explanation
    wait.until(lambda d: d.find_element(By.ID, "explain-section").is_displayed())
    wait.until(lambda d: "Nordbank" in d.find_element(By.ID, "explain-text").text)
    rows[0].click()
    wait.until(lambda d: "Halvard" in d.find_element(By.ID, "explain-text").text)
    words = browser.find_elements(By.CSS_SELECTOR, "#explain-text span.w")
    assert [w.text for w in words] == HEADLINES[0].split()
    assert browser.find_element(By.ID, "explain-title").text.startswith(f"Why {labels[0]}")

    out = Path(os.environ.get("FINSENT_TEST_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(out / "serve_page.png"))
    print(f"\nscreenshot: {out / 'serve_page.png'}")

    browser.set_window_size(390, 844)  # a phone's width: nothing wider than the screen
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
