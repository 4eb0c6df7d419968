"""Open a report in headless Chromium (Debian's chromium + chromium-driver, via selenium)
and read back what a person would see: the capacity table and the decoded images."""

from __future__ import annotations

import tempfile
from pathlib import Path

INSPECT = """
const imgs = Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
  w: i.naturalWidth, h: i.naturalHeight, shown_w: i.clientWidth}));
const cap = document.getElementById('capacity');
return {imgs: imgs,
        capacity_rows: cap ? Array.from(cap.rows).slice(1).map(r => r.innerText) : null,
        fetched: performance.getEntriesByType('resource').map(e => e.name),
        title: document.title};
"""


def open_report(html: Path, screenshot: Path) -> dict:
    """Load `html` from disk; return the page facts and save a full-page screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="gamebed-chromium-") as profile:
        # no background networking: this machine's network is closed, and a report
        # must render with none
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", "--window-size=1200,3000"):
            opts.add_argument(flag)
        driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
        try:
            driver.get(Path(html).resolve().as_uri())
            facts = driver.execute_script(INSPECT)
            driver.save_screenshot(str(screenshot))
        finally:
            driver.quit()
    return facts


def check_in_browser(html, shot, waits: bool = False):
    """The report as Chromium shows it: capacity rows, six decoded plots (seven with the
    guests' run-queue wait recorded: `waits`), nothing fetched."""
    facts = open_report(html, shot)
    assert facts["title"] == "gamebed report"
    assert len(facts["capacity_rows"]) == 2
    assert {r.split()[0] for r in facts["capacity_rows"]} == {"guest", "host"}
    assert [i["alt"] for i in facts["imgs"]] == ["loss", "mean_delay", "p95_delay",
                                                 "stamp_error_cdf", "delay_ccdf_guest",
                                                 "delay_ccdf_host"] + (
                                                     ["stamp_vs_wait"] if waits else [])
    for img in facts["imgs"]:
        assert img["complete"] and img["w"] > 300 and img["h"] > 200 and img["shown_w"] > 0
    assert facts["fetched"] == []  # self-contained: no request leaves the page
    assert shot.stat().st_size > 20_000
    return facts
