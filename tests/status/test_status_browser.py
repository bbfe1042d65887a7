"""The status pages in a real browser: Debian's headless Chromium driven by Playwright loads the page
while an SLO burns, finds the SLO table and the firing alert, follows the SLO link to its charts,
searches the logs, opens a trace's waterfall, and saves screenshots under the test's tmp_path.

The browser must not request anything but the admin server's own pages, and no script may run
(a log body holding ``<script>`` must show as text, not open a dialog).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.status.test_status_page import SCRIPT_BODY, burning_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


async def test_status_pages_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with burning_service(tmp_path / "service") as scene, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            requested: list[str] = []
            dialogs: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))

            await page.goto(scene.base + "/status")
            slo_table = page.locator("table.slos")
            await expect(slo_table).to_be_visible()
            rows = slo_table.locator("tbody tr")
            await expect(rows).to_have_count(3)
            await expect(rows.first).to_have_attribute("data-slo", "checkout-log-errors")
            page_cell = rows.first.locator('td[data-severity="page"]')
            await expect(page_cell).to_have_text("firing")
            await expect(page_cell).to_have_class("state-firing")
            alert = page.locator('#alerts li[data-slo="checkout-log-errors"][data-severity="page"]')
            await expect(alert).to_contain_text("FIRING page")
            await expect(page.locator("table.exporters")).to_contain_text("otlp/backend")
            await page.screenshot(path=str(shots / "status.png"), full_page=True)

            await alert.get_by_role("link", name="checkout-log-errors").click()
            await expect(page).to_have_url(scene.base + "/status/slos/checkout-log-errors")
            await expect(page.locator("svg.chart")).to_have_count(8)
            await expect(page.locator("figure.budget polyline")).to_have_count(1)
            await page.screenshot(path=str(shots / "slo.png"), full_page=True)

            await page.get_by_role("link", name="Logs").click()
            await page.locator('select[name="level"]').select_option("error")
            await page.locator('input[name="q"]').fill("declined")
            await page.get_by_role("button", name="Search").click()
            await expect(page.locator("tr.log")).to_have_count(2)
            await expect(page.locator("table.logs")).to_contain_text(SCRIPT_BODY)
            await page.screenshot(path=str(shots / "logs.png"), full_page=True)

            await page.get_by_role("link", name="Traces").click()
            await page.get_by_role("link", name=scene.trace_id).click()
            await expect(page).to_have_url(f"{scene.base}/status/traces/{scene.trace_id}")
            waterfall = page.locator("svg.waterfall")
            await expect(waterfall).to_be_visible()
            await expect(waterfall.locator("rect.bar")).to_have_count(3)
            await expect(waterfall.locator("rect.bar.error")).to_have_count(1)
            box = await waterfall.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 50
            await expect(page.locator("table.logs")).to_contain_text("card declined for order A-17")
            await page.screenshot(path=str(shots / "trace.png"), full_page=True)
        finally:
            await browser.close()

    assert not dialogs, f"a script ran: {dialogs}"
    foreign = [url for url in requested if not url.startswith(scene.base + "/")]
    assert not foreign, f"the pages requested {foreign}"
    for name in ("status", "slo", "logs", "trace"):
        shot = shots / f"{name}.png"
        assert shot.stat().st_size > 10_000, shot
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
