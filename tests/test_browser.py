"""End-to-end test in a real browser: start the app with ``streamlit run``, upload a repertoire through the file
input, walk Classify -> Attention -> Attributions -> Kernel motifs -> Train (tiny) -> Validate -> Report, check
what is visible, and keep a screenshot of every page under ``screenshots/``.

Uses Debian's Chromium at /usr/bin/chromium through Playwright (never ``playwright install``). Without it the
test is skipped locally and fails on CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "screenshots"
UPLOAD = ROOT / "sample_data" / "single" / "patient_A_airr.tsv"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing on CI: install Debian's chromium package.", pytrace=False)
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    """The app running in a subprocess (``streamlit run app.py``) on a free port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEEPRC_TRAINED_DIR": str(tmp_path_factory.mktemp("trained"))}
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "streamlit.log", "w")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.fail(f"streamlit did not start; see {log.name}")
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def _idle(page, timeout: float = 120_000) -> None:
    """Wait until the script run is over and everything is drawn: the app reports it is not running, and no
    placeholder of an element whose code is still loading remains."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning'
                && !document.querySelector('[data-testid="stSkeleton"]');
        }""",
        timeout=timeout,
    )
    page.wait_for_timeout(300)


def _shot(page, name: str) -> None:
    """Screenshot of the whole page: Streamlit scrolls inside its main container, so the viewport is grown to
    the content's height for the shot."""
    SCREENSHOTS.mkdir(exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 900")
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), 8000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(size)


def _go(page, label: str, title: str) -> None:
    """Follow a sidebar link and wait for the page's title."""
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=label, exact=True).click()
    page.get_by_role("heading", name=title).wait_for(timeout=60_000)
    _idle(page)


def _metric(page, label: str):
    label_locator = page.locator('[data-testid="stMetricLabel"]').get_by_text(label, exact=True)
    return page.locator('[data-testid="stMetric"]').filter(has=label_locator).locator('[data-testid="stMetricValue"]')


def _set_number(page, label: str, value: float) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    _idle(page)


def test_walk_through_every_page(app_url: str) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        (SCREENSHOTS / "failure.png").unlink(missing_ok=True)
        try:
            page.goto(app_url)
            page.get_by_role("heading", name="DeepRC Explorer").first.wait_for()
            _idle(page)
            assert page.get_by_text("Computing on").first.is_visible()
            _shot(page, "01_home")

            # Classify: upload a repertoire through the file input
            _go(page, "Classify", "Classify repertoires")
            page.locator('[data-testid="stButtonGroup"]').get_by_text("Upload files").click()
            _idle(page)
            page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(UPLOAD))
            page.get_by_text("kept 5,000 sequences").first.wait_for()
            _idle(page)
            assert _metric(page, "Repertoires").inner_text() == "1"
            assert page.locator('[data-testid="stDataFrame"]').first.is_visible()
            _shot(page, "02_classify")

            # Attention: the upload is the repertoire shown
            _go(page, "Attention", "Attention over every sequence")
            assert page.get_by_role("combobox", name="Repertoire").input_value() == "patient_A_airr (uploaded)"
            assert _metric(page, "Sequences").inner_text() == "5,000"
            probability = float(_metric(page, "P(positive)").inner_text())
            assert 0.0 <= probability <= 1.0
            assert page.locator('[data-testid="stDataFrame"]').first.is_visible()
            assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3  # rank plot, distribution, heatmap
            _shot(page, "03_attention")

            # Attributions: logos drawn
            _go(page, "Attributions", "Residue attributions")
            page.locator('[data-testid="stImage"] img').first.wait_for()
            assert page.locator('[data-testid="stImage"] img').count() >= 2
            _shot(page, "04_attributions")

            # Kernel motifs: the logo grid and the kernel table
            _go(page, "Kernel motifs", "Kernel motifs")
            page.locator('[data-testid="stImage"] img').first.wait_for()
            assert page.locator('[data-testid="stDataFrame"]').first.is_visible()
            _shot(page, "05_kernel_motifs")

            # Train a tiny model and save it
            _go(page, "Train", "Train a model")
            _set_number(page, "Time budget (minutes)", 0.5)
            _set_number(page, "Max updates", 20)
            _set_number(page, "Batch size", 2)
            _set_number(page, "Sequences per repertoire", 50)
            page.get_by_text("More settings").click()
            _set_number(page, "Validate every", 10)
            _set_number(page, "Validation sequences cap", 300)
            _set_number(page, "Kernels", 8)
            page.get_by_role("button", name=re.compile("Start training")).click()
            page.get_by_text("Finished after").wait_for(timeout=150_000)
            _idle(page)
            _shot(page, "06_train_done")
            name = page.get_by_label("Save the model as", exact=True)
            name.fill("browser_model")
            name.press("Enter")
            _idle(page)
            page.get_by_role("button", name=re.compile("Save model")).click()
            page.get_by_text("Saved as").wait_for()
            _idle(page)
            picker = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Model")
            assert picker.input_value() == "browser_model (trained here)"
            _shot(page, "07_train_saved")

            # Validate and Report on the new model
            _go(page, "Validate", "Validate against known witnesses")
            _shot(page, "08_validate")
            _go(page, "Report", "Report")
            assert page.get_by_role("button", name=re.compile("Download the report")).is_visible()
            _shot(page, "09_report")
            assert not page.locator('[data-testid="stException"]').count()
        except Exception:
            _shot(page, "failure")  # what the page looked like when the test failed
            raise
        finally:
            browser.close()
