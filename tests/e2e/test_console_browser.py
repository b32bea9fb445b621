"""The console in a real browser: headless Debian chromium driven by Selenium against a real
``cgt-gateway serve`` (with its delivery worker) whose sites deliver to loopback MLLP peers that ACK.

One journey: site-a signs in, searches a CoI (without its check character), opens the timeline and
sees every message with its ACK; site-b cannot open site-a's order (404 page); a form without its
CSRF token is refused; an admin retries a dead letter from the queues page and watches it delivered;
the alerts and the dry-run pages work.  Every page is screenshotted (``<tmp_path>/screenshots``) and
checked with axe-core (vendored test-only in tests/fixtures/axe): no serious or critical violation.
Skipped only when chromium or chromium-driver is not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serving import serve
from tests.integration.test_delivery_support import Peer, PeerLoop, write_config

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "fixtures" / "axe" / "axe.min.js"
JOURNEY = json.loads((ROOT / "fixtures" / "events" / "journey-autologous.json").read_text(encoding="utf-8"))
ACME = {"Authorization": "Bearer demo-acme-token"}
ADMIN = {"Authorization": "Bearer demo-admin-token"}

pytestmark = pytest.mark.slow


def _binaries() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    return browser, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    binary, driver_path = _binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1400", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Pages:
    """The browser, the served gateway, and what every page must pass (screenshot, axe-core)."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver, self.base, self.shots = driver, base, shots
        self.checked: list[str] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def submit(self, selector: str) -> None:
        """Click ``selector`` and wait until the next page replaced this one."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        page = self.css("html")
        self.css(selector).click()
        WebDriverWait(self.driver, 20).until(expected_conditions.staleness_of(page))

    def text(self) -> str:
        return str(self.css("body").text)

    def check(self, name: str) -> None:
        """Screenshot the page and run axe-core on it: no serious or critical violation."""
        self.driver.save_screenshot(str(self.shots / f"{len(self.checked):02d}-{name}.png"))
        self.driver.execute_script(AXE.read_text(encoding="utf-8"))
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
        serious = [(v["id"], v["impact"], v["help"], [n.get("target") for n in v["nodes"]][:3])
                   for v in result if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{name}: {serious}"
        self.checked.append(name)

    def sign_in(self, token: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/console/sign-in")
        self.css("#token").send_keys(token)
        self.submit("form.card button[type=submit]")
        assert self.driver.current_url == self.base + "/console", self.text()

    def search(self, query: str) -> None:
        box = self.css("input[name=q]")
        box.clear()
        box.send_keys(query)
        self.submit("form.search button")

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.text()[:2000]}")
            time.sleep(0.3)


def _post_order(base: str, order_id: str, coi: str, mrn: str, events: int) -> None:
    order = {**JOURNEY["order"], "order_id": order_id, "coi": coi,
             "patient": {**JOURNEY["order"]["patient"], "mrn": mrn}}
    assert httpx.post(f"{base}/v1/orders", json=order, headers=ACME).status_code == 201
    for event in JOURNEY["events"][:events]:
        data = dict(event["data"])
        body = {**event, "event_id": f"{order_id}-{event['event_id']}", "coi": coi, "data": data}
        response = httpx.post(f"{base}/v1/orders/{order_id}/events", json=body, headers=ACME)
        assert response.status_code == 201, response.text


def _outbox(base: str, state: str | None = None) -> list[dict[str, Any]]:
    params = {"destination": "site-a/mllp", **({"state": state} if state else {})}
    return list(httpx.get(f"{base}/v1/admin/outbox", params=params, headers=ADMIN).json()["items"])


def test_the_console_in_a_browser(browser: Any, tmp_path: Path) -> None:
    from terminology.isbt128 import check_character

    shots = tmp_path / "screenshots"
    shots.mkdir()
    peers = PeerLoop()
    try:
        site_a, site_b = Peer(peers).start(), Peer(peers).start()
        config = write_config(tmp_path, "sqlite:///unused.db", {"site-a": site_a.port, "site-b": site_b.port},
                              demo_clients=True)
        with serve(tmp_path, "--config", str(config)) as served:
            base = served.base
            coi = "CHA999926000123" + check_character("CHA999926000123")
            _post_order(base, "ORD-WEB-1", coi, "MRN-WEB-1", events=3)
            deadline = time.monotonic() + 30
            while not (sent := _outbox(base)) or any(m["state"] != "delivered" for m in sent):
                assert time.monotonic() < deadline, sent
                time.sleep(0.2)
            pages = Pages(browser, base, shots)
            _site_a_finds_its_order_and_sees_every_ack(pages, coi, sent)
            _site_b_cannot_open_it(pages)
            _forms_without_csrf_are_refused(pages)
            _admin_retries_a_dead_letter(pages, site_a, base)
            _admin_dry_runs_a_draft_profile(pages, tmp_path / "site-a.yaml")
            assert len(list(shots.glob("*.png"))) == len(pages.checked) >= 9
            print(f"\nconsole screenshots: {shots}")
    finally:
        peers.close()


def _site_a_finds_its_order_and_sees_every_ack(pages: Pages, coi: str, sent: list[dict[str, Any]]) -> None:
    pages.open("/console")
    assert pages.driver.current_url.endswith("/console/sign-in")
    pages.check("sign-in")
    pages.sign_in("demo-site-a-token")
    assert "ORD-WEB-1" in pages.text()
    pages.check("orders")
    pages.search(coi[:-1])  # the CoI without its check character
    assert pages.driver.current_url == pages.base + "/console/search"  # posted: the CoI is in no URL
    assert "CoI" in pages.css("table").text
    pages.check("search")
    pages.submit("a[href^='/console/orders/ORD-WEB-1']")
    assert "/console/orders/ORD-WEB-1" in pages.driver.current_url
    sections = pages.all("section.message")
    assert len(sections) == len(sent) >= 4  # order.placed and three events
    for section, message in zip(sections, sorted(sent, key=lambda m: m["id"]), strict=True):
        assert message["control_id"] in section.text
        assert "ACK AA" in section.find_element("css selector", "table.attempts").text
        assert "delivered" in section.text
    summary = pages.all("details.hl7 summary")[0]
    summary.click()
    assert "ORC-1 Order Control" in pages.text()
    assert "Site requests" in pages.text()
    pages.check("timeline")


def _site_b_cannot_open_it(pages: Pages) -> None:
    pages.sign_in("demo-site-b-token")
    pages.open("/console/orders/ORD-WEB-1?manufacturer_id=acme-bio")
    assert "404 Not found" in pages.text() and "ORD-WEB-1" not in pages.css("main").text
    pages.check("site-b-404")
    pages.search("ORD-WEB-1")
    assert "0 order(s) found" in pages.text()


def _forms_without_csrf_are_refused(pages: Pages) -> None:
    pages.sign_in("demo-site-a-token")
    pages.driver.execute_script("document.querySelector('form.search input[name=csrf]').remove()")
    pages.search("ORD-WEB-1")
    assert "403 Forbidden" in pages.text() and "security token" in pages.text()
    pages.check("csrf-403")
    cookie = pages.driver.get_cookie("cgt_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    forged = httpx.post(pages.base + "/console/search", data={"q": "ORD-WEB-1"},
                        cookies={"cgt_console": cookie["value"]})
    assert forged.status_code == 403


def _admin_retries_a_dead_letter(pages: Pages, site_a: Peer, base: str) -> None:
    site_a.script = ["AE"]  # the site's engine refuses the next message once
    _post_order(base, "ORD-WEB-2", "CHA999926000124" + _check("CHA999926000124"), "MRN-WEB-2", events=0)
    deadline = time.monotonic() + 30
    while not (dead := _outbox(base, "dead")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    message_id = dead[0]["id"]
    pages.sign_in("demo-admin-token")
    pages.open("/console/outbox")
    assert f"Retry {message_id}" in pages.text()
    pages.check("queues-dead-letter")
    pages.submit(f"button.retry-one[value='{message_id}']")
    assert f"Message {message_id}: queued again" in pages.text()

    def delivered() -> bool:
        pages.open("/console/orders/ORD-WEB-2?manufacturer_id=acme-bio")
        return "ACK AA" in pages.text() and "ACK AE" in pages.text()

    pages.wait_for(delivered, "the retried message delivered")
    assert "delivered" in pages.css("section.message").text
    pages.check("timeline-after-retry")
    pages.open("/console/outbox")
    assert "No dead letters." in pages.text()
    assert pages.all("svg.spark")
    pages.check("queues-after-retry")
    pages.open("/console/alerts")
    assert "dead-letter" in pages.css("table.alerts-open").text
    pages.check("alerts")
    pages.css("table.alerts-open input[name=note]").send_keys("site engine fixed; retried")
    pages.submit("table.alerts-open button[type=submit]")
    assert "acknowledged" in pages.text()
    assert "site engine fixed; retried" in pages.css("table.alerts-done").text
    pages.check("alerts-acknowledged")


def _admin_dry_runs_a_draft_profile(pages: Pages, profile_path: Path) -> None:
    draft = profile_path.read_text(encoding="utf-8")
    pages.open("/console/sites/site-a/dry-run")
    pages.css("#profile_yaml").send_keys("site_id: site-a\nnot_a_key: 1\n")
    pages.submit("form.card button[type=submit]")
    assert "not valid" in pages.text() and "site-a.yaml:" in pages.css("ul.problems").text
    pages.check("dry-run-invalid")
    area = pages.css("#profile_yaml")
    area.clear()
    pages.driver.execute_script("arguments[0].value = arguments[1]", area, draft)
    from selenium.webdriver.support.ui import Select

    Select(pages.css("#order")).select_by_visible_text("ORD-WEB-1 (acme-bio, apheresis_scheduled)")
    pages.submit("form.card button[type=submit]")
    assert "Result" in pages.text() and "HL7v2" in pages.text(), pages.text()[:3000]
    pages.check("dry-run")


def _check(data: str) -> str:
    from terminology.isbt128 import check_character

    return check_character(data)
