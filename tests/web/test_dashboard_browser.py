"""The web dashboard in a real headless browser: Debian's ``chromium`` driven by selenium
through Debian's ``chromedriver`` (no browser download at run time).

Against a real control plane with emulated replicas and short delays: sign in with the
token, see the seed service with one IDC replica, drive the seed's load so that the
seed's HPA scales out to the virtual node, and read both the DOM and the data the charts
plot: cloud replicas Ready, the cloud cost rising, the autoscaler's decision with its
reason. A screenshot at each step goes to the artifacts directory
(``$TIERSERVE_TEST_ARTIFACTS``, default ``test-artifacts/``) and, with
``TIERSERVE_DOCS_SCREENSHOTS=1``, to ``docs/img/`` for docs/dashboard.md. Without the
session cookie the data is 401; the token is in no URL the browser asked for and in no
line of the control plane's log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tierserve import testing
from tierserve.cli.demo import HOST, SEED_REQUEST, SEED_SERVE
from tierserve.examples import seed_text
from tierserve.testing import control_plane, wait_until

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("TIERSERVE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "dashboard"
DOCS_IMG = REPO / "docs" / "img"
VIRTUAL = "virtual-kubelet-cn-hangzhou-b"
SLO = {"ttftSeconds": 0.04, "tpotSeconds": 0.02}

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
        allow_module_level=True,
    )


class Shots:
    """Numbered screenshots of the page, kept as test artifacts (and docs images)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.n = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.docs = os.environ.get("TIERSERVE_DOCS_SCREENSHOTS") == "1"

    def __call__(self, name: str) -> Path:
        self.n += 1
        path = ARTIFACTS / f"{self.n:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        if self.docs:
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMG / f"dashboard-{name}.png")
        return path


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[testing.Cli]:
    with control_plane(
        testing.Cli(tmp_path / "state"),
        "--hpa-period-s", "0.5",
        "--hpa-downscale-stabilization-s", "600",  # stays scaled out while the test looks
        "--emulator-time-scale", "0.05",
        "--metrics-interval-s", "0.25",
    ) as c:  # fmt: skip
        yield c


@pytest.fixture
def driver() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--window-size=1440,1400", "--no-first-run", "--no-proxy-server",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # Its own log off: chromedriver would log the keys typed into the login form.
    service = Service(executable_path=CHROMEDRIVER, log_output=subprocess.DEVNULL)
    try:
        d = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:  # pragma: no cover - a broken local install
        pytest.skip(f"chromium could not be started: {exc.msg}")
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()


def until(driver: Any, what: Callable[[], Any], timeout_s: float = 30.0, message: str = "") -> Any:
    """Poll ``what`` (a DOM or script read) until it is truthy; its value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = what()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting: {message} (last: {last!r})")


def text(driver: Any, css: str) -> str:
    """The rendered text of the first element ``css`` selects, read in one script (the
    page redraws its tables at every update)."""
    found: str | None = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", css
    )
    return (found or "").strip()


def plotted(driver: Any, chart: str) -> list[list[float | None]]:
    """What the named uPlot chart draws now: [x, series...]."""
    data: list[list[float | None]] = driver.execute_script(
        "const s = window.tierserveDashboard; return s.charts ? s.charts.plotted()[arguments[0]]"
        " : null;",
        chart,
    )
    return data or []


def history(driver: Any, field: str) -> list[float | None]:
    values: list[float | None] = driver.execute_script(
        "const o = window.tierserveDashboard.overview;"
        "return o && o.services.length ? o.services[0].history[arguments[0]] : [];",
        field,
    )
    return values


def cells(driver: Any, css: str) -> list[str]:
    """The text of every element ``css`` selects, read at once (the tables are redrawn
    at every update, so elements found earlier may be gone)."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);", css
    )
    return found


def tab(driver: Any, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#tabs button[data-tab="{name}"]').click()


def requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_dashboard_in_a_real_browser(
    cli: testing.Cli, driver: Any, tmp_path: Path
) -> None:
    config = cli.config()
    token, api = config["token"], config["api_url"]
    seed = tmp_path / "seed.yaml"
    seed.write_text(seed_text("model-storage.yaml") + "---\n" + seed_text("resourcepolicy.yaml"))
    cli("apply", "-f", str(seed))
    cli(*SEED_SERVE)  # the seed's arena serve: SM-util HPA at 50 %, 1..3 replicas
    # An SLO for the page to draw against (the HPA still scales on SM utilisation):
    # emulated seconds, tight enough that some of the seed's requests miss it.
    isvc = json.loads(cli("get", "isvc", "deepseek", "-o", "json").stdout)
    isvc["spec"]["autoscaling"] = {"policy": "hpa", "slo": SLO}
    (tmp_path / "isvc.json").write_text(json.dumps(isvc))
    cli("apply", "-f", str(tmp_path / "isvc.json"))
    wait_until(
        lambda: [(p["status"].get("nodeName"), p["status"]["phase"]) for p in cli.pods()]
        == [("idc001", "Ready")],
        timeout_s=60,
        message="one Ready replica on idc001",
    )
    shots = Shots(driver)

    # Without a session: the data is 401, the page is the login form.
    assert status_of(api + "/api/v1/dashboard/overview") == 401
    assert status_of(api + "/api/v1/dashboard/stream") == 401
    url = cli("dashboard").stdout.split("Dashboard: ")[1].split()[0]
    driver.get(url)
    until(driver, lambda: driver.find_elements(By.ID, "token"), message="the login form")
    shots("login")
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    driver.find_element(By.ID, "sign-in").click()
    until(driver, lambda: "wrong token" in text(driver, "#login-error"), message="refused")
    assert driver.get_cookies() == []

    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    until(driver, lambda: text(driver, "#live") == "live", message="the live stream")
    cookies = {c["name"]: c for c in driver.get_cookies()}
    session = cookies["tierserve_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert token not in session["value"]
    assert driver.execute_script("return document.cookie") == ""  # HttpOnly: no script sees it

    # The seed service with one IDC replica, nothing in the cloud.
    until(driver, lambda: text(driver, "#tile-idc") == "1 / 1", message="1 IDC replica Ready")
    assert text(driver, "#tile-cloud") == "0 / 0"
    assert driver.find_element(By.ID, "service").get_attribute("value") == "default/deepseek"
    until(driver, lambda: len(plotted(driver, "replicas")) == 6, message="the replicas chart")
    assert history(driver, "idcReady")[-1] == 1
    assert driver.find_elements(By.CSS_SELECTOR, "#chart-replicas canvas")
    shots("overview-idc")

    # The seed's load (hey -c 5): SM utilisation over 50 %, the HPA scales out to 3, and
    # idc001 being full, two replicas land on the virtual node after its cold start.
    gateway = config["gateway_url"]
    bench = subprocess.Popen(
        [
            sys.executable, "-m", "tierserve.cli.main", "bench", "-z", "120s", "-c", "5",
            "-m", "POST", "-host", HOST, "-H", "Content-Type: application/json",
            "-d", SEED_REQUEST, "--no-progress", f"{gateway}/v1/chat/completions",
        ],
        env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        updates_before = driver.execute_script("return window.tierserveDashboard.updates")
        until(
            driver,
            lambda: text(driver, "#tile-cloud") == "2 / 2",
            timeout_s=120,
            message="two cloud replicas Ready on the page",
        )
        # Cost accrues while the cloud replicas run: wait for a few more points.
        first_cost = float(text(driver, "#tile-cost-total"))
        until(
            driver,
            lambda: float(text(driver, "#tile-cost-total") or 0) > first_cost,
            message="the cumulative cloud cost rising",
        )
        until(
            driver,
            lambda: (history(driver, "ttftP50") or [None])[-1] is not None,
            message="TTFT quantiles from the engines",
        )
        shots("overview-scaled-out")
    finally:
        bench.send_signal(signal.SIGINT)
        bench.wait(timeout=60)

    # The chart data: what the charts plot, not only the tiles.
    assert driver.execute_script("return window.tierserveDashboard.updates") > updates_before
    replicas = plotted(driver, "replicas")
    top = [v for v in replicas[1] if v is not None]  # the stacked total
    assert top[0] == 1 and top[-1] == 3
    cloud_ready = history(driver, "cloudReady")
    assert cloud_ready[0] == 0 and cloud_ready[-1] == 2
    assert sum(v or 0 for v in history(driver, "coldStarts")) == 2  # two cold starts marked
    marks = [v for v in replicas[5] if v is not None]
    assert marks, "the cold starts are marked on the replicas chart"
    cost = plotted(driver, "cost")
    per_hour = [v for v in cost[1] if v is not None]
    total = [v for v in cost[2] if v is not None]
    assert per_hour[0] == 0 and per_hour[-1] > 0
    assert total[-1] > total[0] and total == sorted(total)
    assert per_hour[-1] == pytest.approx(5.0)  # 2 cloud GPUs at the default 2.5 per hour
    ttft = plotted(driver, "ttft")  # t, p50, p90, the SLO line
    assert len(ttft) == 4 and any(v is not None for v in ttft[1])
    assert set(ttft[3]) == {SLO["ttftSeconds"]}
    attained = [v for v in history(driver, "attainmentTtft") if v is not None]
    assert attained and all(0 <= v <= 1 for v in attained)
    assert "%" in text(driver, "#tile-attainment")
    assert max(v or 0 for v in history(driver, "requestRate")) > 0  # the load, seen

    # The decisions: the HPA's rescale with its reason, and the placements.
    tab(driver, "decisions")
    until(
        driver,
        lambda: "DCGM_CUSTOM_PROCESS_SM_UTIL above target" in text(driver, "#timeline"),
        message="the autoscaler's decision and reason",
    )
    timeline = text(driver, "#timeline")
    assert "SuccessfulRescale" in timeline and "New size: " in timeline
    assert "Provisioned" in timeline and VIRTUAL in timeline
    driver.find_element(By.ID, "decisions-only").click()  # the autoscaler and scheduler only
    reasons = set(cells(driver, "#timeline li .reason"))
    assert "SuccessfulRescale" in reasons and "Scheduled" in reasons
    assert "Healthy" not in reasons and "Started" not in reasons
    shots("decisions")

    tab(driver, "nodes")
    (virtual,) = cells(driver, f'#nodes-table tr[data-node="{VIRTUAL}"]')
    assert "cloud" in virtual and "2 / 8" in virtual and "2.50" in virtual
    (idc,) = cells(driver, '#nodes-table tr[data-node="idc001"]')
    assert "1 / 1" in idc and "V100-32G" in idc
    shots("nodes")

    tab(driver, "detail")
    assert sorted(cells(driver, "#pods-table tbody td:nth-child(4)")) == ["cloud", "cloud", "idc"]
    assert cells(driver, "#pods-table tbody td:nth-child(2)") == ["Ready"] * 3
    units = text(driver, "#units-table")
    assert "ecs" in units and "eci" in units
    autoscaler = text(driver, "#autoscaler")
    assert "DCGM_CUSTOM_PROCESS_SM_UTIL target 50" in autoscaler and "1 – 3" in autoscaler
    assert "TTFT 0.04 s, TPOT 0.02 s" in autoscaler
    shots("service")

    # The token was in no URL the browser asked for, nor in the control plane's log.
    urls = requested_urls(driver)
    assert any("/api/v1/dashboard/stream" in u for u in urls)
    assert not [u for u in urls if token in u]
    assert token not in driver.current_url
    log = (cli.root / "controlplane.log").read_text(errors="replace")
    assert token not in log and session["value"] not in log
    errors = [
        e
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "/dashboard/login - " not in e["message"]  # the wrong try
    ]
    assert errors == [], errors

    # Signed out: back to the form, and the data is 401 for this browser too.
    tab(driver, "overview")
    driver.find_element(By.ID, "logout").click()
    until(driver, lambda: driver.find_elements(By.ID, "token"), message="the login form again")
    driver.get(api + "/api/v1/dashboard/overview")
    assert "Unauthorized" in driver.find_element(By.TAG_NAME, "body").text
