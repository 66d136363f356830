"""Real-browser test: the mask inspector renders as a live widget in JupyterLab.

Starts JupyterLab on 127.0.0.1 with a random token (the venv's ``python3`` kernel), opens a
notebook written into a temporary folder in headless Chromium through Selenium and the system
chromedriver, runs the cell that shows ``MaskInspector`` on tiny-random with Shift+Enter, and checks
that the widget rendered (not the "Loading widget..." or "Error displaying widget" placeholder) and
that it answers a click (train on "all" -> trained fraction 100%). A screenshot is saved as
``test-artifacts/mask_inspector.png``. The server is stopped by its PID in teardown.

Skipped, with the reason, where Chromium, chromedriver or selenium is missing
(``.ci/run`` or ``apt-get install chromium chromium-driver`` provides them).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port, wait_for_http

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("INSTRUCTLAB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("INSTRUCTLAB_CHROMEDRIVER", "/usr/bin/chromedriver")
# No sandbox (root in a container), no GPU, and no background connections: the network is closed.
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000")
SERVER_START_S = 120     # JupyterLab start on a shared 2-core machine
CELL_RUN_S = 240         # kernel start + torch/transformers import (~8 s alone) + tokenizer
NOTEBOOK = "mask_inspector.ipynb"
CELL = '''\
from instructlab.widgets import MaskInspector

conversations = [
    [{"role": "system", "content": "You are the Kestrel assistant."},
     {"role": "user", "content": "What does MTTR stand for?"},
     {"role": "assistant", "content": "Mean time to restore: the average time to bring a service back."}],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"},
     {"role": "user", "content": "Again."}, {"role": "assistant", "content": "Hi again!"}],
]
MaskInspector(conversations, tokenizers=["tiny-random"])
'''


def _missing() -> str | None:
    """Why the test cannot run here, or None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return None
    return (f"browser test needs {', '.join(missing)}: install Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver; .ci/run does this) or set "
            "INSTRUCTLAB_CHROMIUM / INSTRUCTLAB_CHROMEDRIVER")


def _write_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("Mask inspector, rendered live."), nbformat.v4.new_code_cell(CELL)]
    nbformat.write(nb, path)


def _server_env(tmp: Path) -> dict:
    """The test's environment, isolated from the user's Jupyter settings, never forced headless."""
    env = {k: v for k, v in os.environ.items() if k not in ("INSTRUCTLAB_HEADLESS", "JPY_SESSION_NAME")}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[name] = str(tmp / name.lower())
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "lab-settings"))
    # No "get notified about Jupyter news?" toast over the screenshot (and no request for news).
    news = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    return env


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server by its PID: SIGTERM (it shuts its kernels down), then SIGKILL on its group."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group holds the server and its kernels only
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab: yields (base url, token, root folder)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    _write_notebook(root / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    log = tmp / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_server_env(tmp),
                                cwd=root, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/api/status?token={token}", proc, log, SERVER_START_S, "JupyterLab")
        yield base, token, tmp, log
    finally:
        _stop(proc)


@pytest.fixture()
def browser(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp = lab[2]
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp / 'chromium-profile'}")
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, timeout: float, what: str, condition):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A condition that read an element just re-rendered is retried at the next poll, not failed.
    return WebDriverWait(driver, timeout, poll_frequency=0.5,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition, message=f"waiting for {what}")


def _css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _texts(driver, selector: str) -> list[str]:
    """innerText of every match, read in one script call.

    JupyterLab re-renders output areas while a cell runs, so an element found by one WebDriver
    call can be gone by the next (StaleElementReferenceException, seen in CI). One script call
    reads the live DOM atomically and cannot go stale.
    """
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText || '');", selector)


def _inspector_text(driver) -> str:
    stats = _texts(driver, ".jp-OutputArea-output .il-mask-inspector .il-mask-stats")
    return stats[0] if stats else ""


def _failed(driver) -> str:
    """The text of a widget error or a Python error in the output area, or ''."""
    for text in _texts(driver, ".jp-OutputArea-output"):
        if "Error displaying widget" in text or "Traceback" in text:
            return text
    return ""


def _loading(driver) -> bool:
    return any("Loading widget" in text for text in _texts(driver, ".jp-OutputArea-output"))


def _retry_stale(action, tries: int = 10):
    """Run a find-then-act step again when the DOM was re-rendered under it."""
    import time

    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(tries):
        try:
            return action()
        except StaleElementReferenceException:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def _run_cell(driver) -> None:
    """Click into the code cell and press Shift+Enter, as a reader would."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def click_editor():
        _wait(driver, 120, "the code cell", lambda d: _css(d, ".jp-CodeCell .jp-InputArea-editor"))[0].click()

    _retry_stale(click_editor)
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()


def _notebook_ready(driver) -> bool:
    """The code cell is on screen and the status bar reports an idle kernel."""
    bar = _css(driver, "#jp-main-statusbar")
    cells = _css(driver, ".jp-Notebook .jp-CodeCell .jp-InputArea-editor")
    return bool(bar and "Idle" in bar[0].text and cells and cells[0].is_displayed())


def test_mask_inspector_renders_in_jupyterlab(lab, browser):
    base, token, tmp, log = lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "mask_inspector.png"
    driver = browser
    try:
        driver.get(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
        _wait(driver, 180, "the notebook with an idle python3 kernel", _notebook_ready)
        _run_cell(driver)
        widget = ".jp-OutputArea-output .jupyter-widgets.il-mask-inspector"
        _wait(driver, CELL_RUN_S, "the rendered MaskInspector widget",
              lambda d: _failed(d) or ("tokens" in _inspector_text(d) and _css(d, widget)))
        assert not _failed(driver), f"the cell failed or the widget did not render:\n{_failed(driver)}"
        assert not _loading(driver), "the 'Loading widget...' placeholder is still shown"
        assert _css(driver, widget + " .widget-dropdown"), "tokenizer/template dropdowns missing"
        assert _css(driver, widget + " .il-mask-tokens span"), "no coloured tokens in the inspector"
        assert "tokenizer tiny-random" in _inspector_text(driver)
        assert "trained fraction 100.0%" not in _inspector_text(driver)  # assistant-only by default
        _retry_stale(lambda: driver.execute_script("arguments[0].scrollIntoView({block: 'center'});",
                                                   _css(driver, widget)[0]))
        driver.save_screenshot(str(shot))

        # The widget talks to the kernel: training on every token makes the fraction 100%.
        def click_all():
            buttons = [b for b in _css(driver, widget + " .widget-toggle-button") if b.text == "all"]
            assert buttons, "train_on toggle buttons missing"
            buttons[0].click()

        _retry_stale(click_all)
        _wait(driver, 60, "the inspector to re-render for train_on=all",
              lambda d: "trained fraction 100.0%" in _inspector_text(d))
    except Exception:
        driver.save_screenshot(str(ARTIFACTS / "mask_inspector_failure.png"))
        print(f"JupyterLab log tail:\n{log.read_text()[-4000:]}")
        raise
    assert shot.stat().st_size > 10_000
