"""The run page in a real browser (headless Debian chromium, Selenium): start a run over an
uploaded file from the form, see its events and its answer appear live; model text stays text."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recursor.lm.stub_server import StubServer

from .harness import Running

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("needs Debian's chromium and chromium-driver (make system-deps installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1400",
                f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def test_start_a_run_from_the_page(
    serve: Callable[..., Running], stub: StubServer, browser: object, tmp_path: Path
) -> None:
    """On a keyed server: the key typed into the page is sent with every call."""
    server = serve(keys=[{"name": "page", "key": "sk-page"}])
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    assert isinstance(browser, WebDriver)

    def handler(messages: list[dict[str, str]]) -> str:
        if messages[0]["role"] == "system":
            if len(messages) == 2:
                return "```repl\nn = len(context)\nsays = llm_query('echo ' + str(n))\n```"
            return f"FINAL(the file has {HOSTILE} chars)"
        return messages[-1]["content"].removeprefix("echo ")

    stub.script.handler = handler
    doc = tmp_path / "report.txt"
    doc.write_text("r" * 4242)
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 30)
    browser.find_element(By.ID, "key").send_keys("sk-page")
    browser.find_element(By.ID, "refresh").click()
    wait.until(lambda d: Select(d.find_element(By.ID, "model")).options)
    Select(browser.find_element(By.ID, "model")).select_by_value("rlm")
    browser.find_element(By.ID, "file").send_keys(str(doc))
    browser.find_element(By.ID, "query").send_keys("how long is the report?")
    browser.find_element(By.ID, "go").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "run-state"), "succeeded"))
    events = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#events li")]
    assert events[0].startswith("run started") and events[-1] == "finished (final)"
    assert any(e.startswith("llm -> ") for e in events)
    answer = browser.find_element(By.ID, "answer").text
    assert answer == f"the file has {HOSTILE} chars"  # shown as text, not markup
    assert browser.title != "pwned" and not browser.find_elements(By.CSS_SELECTOR, "#answer img")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tr.run"))
    assert "succeeded" in browser.find_element(By.CSS_SELECTOR, "#runs tr.run").text
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "serve-run-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    # the full viewer over the stored events opens from the page's button, in a new tab
    browser.find_element(By.ID, "trace-open").click()
    wait.until(lambda d: len(d.window_handles) == 2)
    browser.switch_to.window(browser.window_handles[1])
    wait.until(lambda d: "how long is the report?" in d.page_source)
