"""The leaderboard site in a real headless browser: Chromium and its driver from Debian's
packages (``apt-get install chromium chromium-driver``) driven by Selenium. The page is built from the
committed leaderboard records; the test checks that it loads with no console error and no request outside
its folder, that clicking a header sorts the rows, that a filter hides rows, and that a clicked row shows
its record. Skipped, with the reason, where the browser is absent. ``AFSL_BENCH_SCREENSHOT=PATH`` keeps
a screenshot of the page (docs/img/leaderboard-site.png was taken so)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from afsl_bench.report import leaderboard as lb
from afsl_bench.report.site import COLUMNS, rows, write_site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no headless browser: apt-get install chromium chromium-driver (Debian) to run the site test",
)


@pytest.fixture(scope="module")
def records():
    return lb.read_export(ROOT / lb.EXPORT)


@pytest.fixture(scope="module")
def page(records, tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return write_site(records, out, ROOT / lb.PLOTS, "afsl-bench leaderboard", "the committed records")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


#: the shown rows' cells, read in one script call (a WebDriver round trip per row would take seconds)
SHOWN = (
    "return Array.from(document.querySelectorAll('#cells tbody tr')).filter(r => !r.hidden)"
    ".map(r => ({cell: r.dataset.cell, defense: r.dataset.defense,"
    " values: Array.from(r.cells).map(c => c.dataset.value)}))"
)


def visible(browser) -> list[dict]:
    return browser.execute_script(SHOWN)


def requests_outside(browser, page: Path) -> tuple[list[str], list[str]]:
    """Load the page; (what it requested, what of it is neither a file in its folder nor inline data)."""
    browser.get_log("performance")  # drained: what the browser loaded for itself before the page
    browser.get(page.as_uri())
    events = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    requested = [  # what the page asked for (the browser's own new-tab page asks for its own things)
        e["params"]["request"]["url"]
        for e in events
        if e["method"] == "Network.requestWillBeSent" and e["params"].get("documentURL") == page.as_uri()
    ]
    inside = (page.parent.as_uri(), "data:")
    return requested, [url[:80] for url in requested if not url.startswith(inside)]


def test_the_page_loads_without_errors_or_network_requests(browser, page, records):
    requested, outside = requests_outside(browser, page)
    assert requested and not outside, outside
    assert browser.find_element("id", "shown").text == str(len(records))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    if target := os.environ.get("AFSL_BENCH_SCREENSHOT"):
        browser.save_screenshot(target)


def test_the_request_check_sees_a_remote_resource(browser, page, tmp_path):
    """The check above can fail: the same page with one image from a CDN is caught."""
    remote = tmp_path / "index.html"
    remote.write_text(
        page.read_text().replace("<h1>", '<img src="https://cdn.example.invalid/x.png"><h1>', 1)
    )
    _, outside = requests_outside(browser, remote)
    assert outside == ["https://cdn.example.invalid/x.png"]


def test_clicking_a_header_sorts_the_rows_and_again_reverses_them(browser, page, records):
    browser.get(page.as_uri())
    header = browser.find_element("css selector", 'th[data-key="robust_acc"]')
    column = next(c for c, (_, key, _) in enumerate(COLUMNS) if key == "robust_acc")

    def values():
        return [float(row["values"][column]) for row in visible(browser)]

    before = values()
    header.click()
    ascending = values()
    assert ascending == sorted(before) and ascending != before
    header.click()
    assert values() == sorted(before, reverse=True)


def test_a_filter_hides_the_other_rows(browser, page, records):
    from selenium.webdriver.support.ui import Select

    browser.get(page.as_uri())
    wanted = sum(1 for r in rows(records) if r["defense"] == "at")
    Select(browser.find_element("css selector", 'select[data-filter="defense"]')).select_by_value("at")
    shown = visible(browser)
    assert 0 < len(shown) == wanted < len(records)
    assert {row["defense"] for row in shown} == {"at"}
    assert browser.find_element("id", "shown").text == str(wanted)


def test_a_clicked_row_shows_its_settings_and_record(browser, page, records):
    browser.get(page.as_uri())
    cell = visible(browser)[3]["cell"]
    browser.find_element("css selector", f'tr[data-cell="{cell}"] td').click()
    detail = browser.find_element("id", "detail")
    assert detail.is_displayed() and cell in detail.find_element("tag name", "h2").text
    record = next(r for r in records if r.cell_id == cell)
    assert json.loads(browser.find_element("id", "spec").text) == record.spec
    assert json.loads(browser.find_element("id", "record").text)["metrics"] == record.metrics
