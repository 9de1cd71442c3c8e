"""The browser app in a real browser: headless Chromium from the system's packages driven by
selenium (nothing downloads a browser). `populace view` is started as a user would start it; the
test presses play, watches the step counter and the chart advance, steps, moves a slider and
sees the change reach the simulation, is refused an out-of-bounds value, sees a model that raises
show its error naming the step, closes the tab and sees the run stop.

Screenshots go to tests/view/artifacts/ (ignored by git).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
)

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "no system Chromium: apt-get install chromium chromium-driver (.ci/run does) to run "
        "the browser tests of the live view",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
pytest.importorskip("solara", reason="the live view needs the view extra (solara)")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

pytestmark = pytest.mark.slow


class Server:
    """`populace view ...` in a subprocess: its URL (first stdout line) and its stderr."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "populace", "view", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, None), daemon=True).start()
        threading.Thread(
            target=self._read, args=(self.proc.stderr, self.stderr), daemon=True
        ).start()
        try:
            line = self.lines.get(timeout=90)
        except queue.Empty:
            self.close()
            raise AssertionError(f"populace view printed no URL; stderr: {self.stderr}") from None
        assert line.startswith("populace view: http://127.0.0.1:"), line
        self.url = line.split(": ", 1)[1].strip()

    def _read(self, stream, into) -> None:
        for line in stream:
            (self.lines.put(line) if into is None else into.append(line))

    def wait_stderr(self, text: str, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.stderr):
                if text in line:
                    return line
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} on stderr: {''.join(self.stderr)[-2000:]}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="populace-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def until(predicate, timeout: float = 30, what: str = "the page"):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def text(driver, css: str) -> str:
    # read in one script: the page redraws while it plays, so element handles go stale
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css
    )


def step_of(driver) -> int:
    words = text(driver, ".pv-step").split()
    return int(words[1]) if len(words) == 2 else -1


def table(driver, css: str) -> dict[str, list[str]]:
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))"
        ".map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.innerText));",
        css,
    )
    return {cells[0]: cells[1:] for cells in rows}


def latest(driver, metric: str) -> float:
    return float(table(driver, ".pv-latest")[metric][-1])


def chart_src(driver) -> str:
    """The chart's SVG as the page has it."""
    return driver.execute_script(
        "const e = document.querySelector('.pv-chart svg'); return e ? e.outerHTML : '';"
    )


def type_like_a_person(box, value: str) -> None:
    """Replace a text box's value key by key, then press Enter. (Keys sent faster than the page
    syncs them can let the Enter overtake the last characters: ipywidgets throttles state
    updates but not events.)"""
    box.click()
    box.send_keys(Keys.END, Keys.BACKSPACE * len(box.get_attribute("value")))
    for key in value:
        box.send_keys(key)
        time.sleep(0.05)
    time.sleep(0.2)
    box.send_keys(Keys.ENTER)


def click(driver, css: str) -> None:
    button = until(lambda: driver.find_elements(By.CSS_SELECTOR, css), what=css)[0]
    until(button.is_enabled, what=f"{css} enabled")
    button.click()


def step_once(driver) -> None:
    before = step_of(driver)
    click(driver, ".pv-step-button")
    until(lambda: step_of(driver) == before + 1, what=f"step {before + 1}")


USER_MODEL = """
import dataclasses

from populace.models import sir


def build(agents: int = 500, initial_infected: int = 10):
    model = sir.build(agents=agents, initial_infected=initial_infected)
    original = model.steps[0]

    def unlucky_step(state, params, ctx):
        if float(params.beta) > 5:
            raise RuntimeError(f"the user's step failed: beta {float(params.beta):g} is too high")
        return original(state, params, ctx)

    return dataclasses.replace(model, steps=(unlucky_step,))
"""


def test_play_step_steer_refuse_fail_and_close(browser, tmp_path):
    """One server, one page (each start costs seconds on a busy machine): a user's model from
    a file, an SIR whose step refuses beta > 5."""
    (tmp_path / "unlucky.py").write_text(USER_MODEL)
    # R0 = 1.2 from 200 infectious agents: a slow epidemic, still growing when steered
    server = Server(
        "unlucky.py:build",
        *("--agents", "20000", "--members", "4", "--seed", "1"),
        *("--set", "beta=0.3", "--set", "initial_infected=200"),
        cwd=tmp_path,
    )
    try:
        browser.get(server.url)
        until(lambda: step_of(browser) == 0 and chart_src(browser), 60, "the app")
        first_chart = chart_src(browser)

        # stepping at beta = 0.3 infects more agents: S falls, the chart follows
        s_start = latest(browser, "S")
        for _ in range(3):
            step_once(browser)
        s_stepped = until(
            lambda: latest(browser, "S") < s_start and latest(browser, "S"), what="S to fall"
        )
        assert chart_src(browser) != first_chart

        # the slider ends at beta's lower bound 0; the simulation then infects no one
        thumb = browser.find_element(By.CSS_SELECTOR, ".pv-param-beta .v-slider-thumb")
        browser.execute_script("arguments[0].focus()", thumb)
        browser.switch_to.active_element.send_keys(Keys.HOME)
        until(lambda: table(browser, ".pv-in-force")["beta"] == ["0"], what="beta 0 in force")
        for _ in range(3):
            step_once(browser)
        assert latest(browser, "S") == s_stepped

        # play: the step counter and the chart advance until paused
        shown = chart_src(browser)
        click(browser, ".pv-play")
        until(lambda: step_of(browser) >= 20, what="the step counter to advance")
        until(lambda: chart_src(browser) != shown, what="the chart to advance")
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "live_view_playing.png"))
        click(browser, ".pv-play")  # now "pause"
        until(lambda: "paused" in text(browser, ".pv-status"), what="paused")
        assert latest(browser, "S") == s_stepped

        # a value outside the declared bounds is refused and never sent
        box = browser.find_element(By.CSS_SELECTOR, ".pv-param-gamma .v-text-field input")
        type_like_a_person(box, "1.5")
        refused = until(lambda: text(browser, ".pv-param-gamma .pv-refused"), what="refusal")
        assert "'gamma' must lie in [0, 1]" in refused
        assert table(browser, ".pv-in-force")["gamma"] == ["0.25"]

        # a value the declarations allow but the model's step refuses: the run stops on it
        box = browser.find_element(By.CSS_SELECTOR, ".pv-param-beta .v-text-field input")
        type_like_a_person(box, "8")
        until(lambda: table(browser, ".pv-in-force")["beta"] == ["8"], what="beta 8 in force")
        failing_at = step_of(browser)
        click(browser, ".pv-step-button")
        error = until(lambda: text(browser, ".pv-error"), what="the error")
        assert f"stopped at step {failing_at}" in error
        assert "the user's step failed: beta 8 is too high" in error and "unlucky_step" in error
        assert step_of(browser) == failing_at
        assert not browser.find_element(By.CSS_SELECTOR, ".pv-play").is_enabled()
        browser.save_screenshot(str(ARTIFACTS / "live_view_error.png"))

        # closing the tab stops the run
        browser.get("about:blank")
        line = server.wait_stderr("page closed")
        assert f"the run of sir stopped at step {failing_at}" in line
    finally:
        server.close()
