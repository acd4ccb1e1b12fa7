"""The web console in a real browser: headless Chromium driven by selenium against a real daemon
(`llmasos serve --model fake`). A user logs in with the token, spawns an app from the form and sees its
row, watches its output stream, sends it a line of stdin, kills it and sees the state change; a bad
token shows a clear error. Screenshots go to $LLMASOS_TEST_ARTIFACTS (else .cache/artifacts/).

Skipped, with the reason, where Chromium, chromedriver or selenium is missing (.ci/run installs them
with apt when it runs as root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon import LLMASOS, ROOT, daemon_env, start_daemon, stop_daemon

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    SELENIUM = True
except ImportError:
    SELENIUM = False

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER and SELENIUM),
    reason="needs Chromium, chromedriver and selenium (apt-get install chromium chromium-driver; "
           "pip install selenium): " + ", ".join(n for n, ok in (("chromium", CHROMIUM), ("chromedriver", DRIVER),
                                                                  ("selenium", SELENIUM)) if not ok) + " missing",
)

TOKEN = "console-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 10.0


def artifacts() -> Path:
    where = Path(os.environ.get("LLMASOS_TEST_ARTIFACTS") or ROOT / ".cache" / "artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = daemon_env(tmp_path_factory.mktemp("home")) | {"LLMASOS_API_TOKEN": TOKEN}
    process, url = start_daemon(env)
    yield url
    rc, err = stop_daemon(process)
    assert rc == 0 and "Traceback" not in err, err  # serving the console left nothing broken behind


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium would not start under chromedriver: {exc.msg}")
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def until(driver: Any, check: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: check(d), message=what)


def by(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def text(driver: Any, css: str) -> str:
    return by(driver, css).text


def shot(driver: Any, name: str) -> Path:
    path = artifacts() / f"console-{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    return path


def log_in(driver: Any, url: str, token: str) -> None:
    driver.get(url + "/")
    until(driver, lambda d: by(d, "#token").is_displayed(), "the login form")
    by(driver, "#token").clear()
    by(driver, "#token").send_keys(token)
    by(driver, "#login-submit").click()


def test_a_bad_token_shows_a_clear_error(daemon: str, browser: Any) -> None:
    browser.execute_script("sessionStorage.clear()") if browser.current_url.startswith("http") else None
    log_in(browser, daemon, "not-the-token")
    error = until(browser, lambda d: text(d, "#login-error"), "the login error")
    assert error.startswith("Login failed: wrong API token") and "api_token" in error
    assert by(browser, "#nav").is_displayed() is False
    assert browser.execute_script("return sessionStorage.getItem('llmasos-token')") is None
    shot(browser, "bad-token")


def test_log_in_spawn_watch_stdin_and_kill(daemon: str, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    log_in(browser, daemon, TOKEN)
    until(browser, lambda d: by(d, "#proc-table").is_displayed(), "the process table after login")
    assert TOKEN not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('llmasos-token')") == TOKEN
    until(browser, lambda d: "live" in text(d, "#live"), "the live event stream")

    # Spawn chat from the form built from its signature: system (str) and max_tokens (int).
    until(browser, lambda d: d.find_elements("css selector", "#spawn-app option"), "the apps in the form")
    Select(by(browser, "#spawn-app")).select_by_value("chat")
    until(browser, lambda d: d.find_elements("css selector", '#spawn-fields input[data-param="max_tokens"]'),
          "chat's fields")
    assert by(browser, '#spawn-fields input[data-param="max_tokens"]').get_attribute("type") == "number"
    by(browser, '#spawn-fields input[data-param="system"]').send_keys("Be brief.")
    by(browser, '#spawn-fields input[data-param="max_tokens"]').send_keys("12")
    by(browser, "#spawn-submit").click()
    spawned = until(browser, lambda d: text(d, "#spawn-usage").startswith("spawned pid") and text(d, "#spawn-usage"),
                    "the spawned pid")
    pid = int(spawned.split()[-1])
    row = f'#proc-table tr[data-pid="{pid}"]'
    until(browser, lambda d: d.find_elements("css selector", row) and "chat" in text(d, row), "its row")
    until(browser, lambda d: text(d, f"{row} td.state") == "waiting", "its row waiting on stdin")
    info = httpx.get(f"{daemon}/v1/procs/{pid}", headers=AUTH).json()
    assert info["app"] == "chat" and info["args"] == ["Be brief.", 12]  # the form's values, max_tokens an int
    shot(browser, "processes")

    # Open it, send a line of stdin, watch the streamed answer and its syscalls.
    by(browser, row).click()
    until(browser, lambda d: by(d, "#tab-proc").is_displayed() and text(d, "#proc-title") == f"[{pid}] chat",
          "the process view")
    by(browser, "#stdin").send_keys("What is an OS?")
    by(browser, "#stdin-send").click()
    output = until(browser, lambda d: "What is an OS?" in text(d, "#output") and text(d, "#output"), "its output")
    assert output.startswith("echo:")  # the FakeEngine answers "echo: <the prompt>", streamed word by word
    until(browser, lambda d: "generate(" in text(d, "#trace") and "readline()" in text(d, "#trace"),
          "its syscalls")
    by(browser, "#trace-filter").send_keys("generate")
    until(browser, lambda d: "readline()" not in text(d, "#trace") and "generate(" in text(d, "#trace"),
          "the filtered syscalls")
    until(browser, lambda d: "3 messages" in text(d, "#ctx-text") and "What is an OS?" in text(d, "#mem"),
          "its context: system, user, its reply")
    shot(browser, "process")

    # Change its priority: the table says so.
    by(browser, "#proc-priority").clear()
    by(browser, "#proc-priority").send_keys("-4")
    by(browser, "#proc-renice").click()
    until(browser, lambda d: "priority -4" in text(d, "#proc-info"), "the new priority")
    assert httpx.get(f"{daemon}/v1/procs/{pid}", headers=AUTH).json()["priority"] == -4

    # Kill it; the state changes here and in the table.
    by(browser, "#proc-kill").click()
    until(browser, lambda d: text(d, "#proc-state") == "killed", "the killed state")
    assert by(browser, "#proc-kill").get_attribute("disabled") is not None
    by(browser, '#nav button[data-tab="procs"]').click()
    until(browser, lambda d: text(d, f"{row} td.state") == "killed", "the killed row")
    assert text(browser, f"{row} td:nth-child(5)") == "-4"

    # The session keeps the token across a reload; it never enters a URL.
    browser.refresh()
    until(browser, lambda d: by(d, "#proc-table").is_displayed(), "the table after a reload")
    assert TOKEN not in browser.current_url
    browser.find_element("css selector", '#nav button[data-tab="model"]').click()
    until(browser, lambda d: "engine fake" in text(d, "#model-line"), "the model line")
    before = int(text(browser, "#model-line").split("tokens ")[1].split()[0])
    for i in range(3):  # some work for the charts: three greetings, one after another
        spawn = httpx.post(f"{daemon}/v1/procs", json={"app": "hello", "args": [f"n{i}"]}, headers=AUTH).json()
        httpx.post(f"{daemon}/v1/procs/{spawn['pid']}/wait", params={"timeout": 5}, headers=AUTH)
    until(browser, lambda d: int(text(d, "#model-line").split("tokens ")[1].split()[0]) > before,
          "the model's token count to grow")
    shot(browser, "model")
    browser.find_element("css selector", '#nav button[data-tab="apps"]').click()
    until(browser, lambda d: d.find_elements("css selector", '#apps-list details[data-app="chat"]'), "the apps")
    by(browser, '#apps-list details[data-app="chat"]').click()
    by(browser, '#tools-list details[data-tool="calculator"]').click()
    assert "max_tokens" in text(browser, '#apps-list details[data-app="chat"]')
    assert '"expression"' in text(browser, '#tools-list details[data-tool="calculator"]')  # its JSON schema
    browser.execute_script("window.scrollTo(0, 0)")
    shot(browser, "apps")


def test_output_is_shown_as_text_never_as_markup(daemon: str, browser: Any) -> None:
    hostile = ["<img", "src=x", "onerror=\"document.title='pwned'\">", "<b>bold</b>"]
    pid = httpx.post(f"{daemon}/v1/procs", json={"app": "echo", "args": hostile}, headers=AUTH).json()["pid"]
    log_in(browser, daemon, TOKEN) if not by(browser, "#nav").is_displayed() else None
    by(browser, '#nav button[data-tab="procs"]').click()
    row = f'#proc-table tr[data-pid="{pid}"]'
    until(browser, lambda d: d.find_elements("css selector", row), "the echo row")
    by(browser, row).click()
    until(browser, lambda d: "<b>bold</b>" in text(d, "#output"), "the literal output")
    assert " ".join(hostile) in text(browser, "#output")
    assert not browser.find_elements("css selector", "#output img, #output b, #proc-info img")
    assert browser.title == "llmasos console"


def test_a_refused_spawn_shows_the_servers_reason_and_logging_out_forgets_the_token(daemon: str, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    log_in(browser, daemon, TOKEN) if not by(browser, "#nav").is_displayed() else None
    by(browser, '#nav button[data-tab="procs"]').click()
    before = len(httpx.get(f"{daemon}/v1/procs", params={"all": "true"}, headers=AUTH).json()["data"])
    Select(by(browser, "#spawn-app")).select_by_value("echo")
    by(browser, "#spawn-priority").send_keys(str(2**70))  # beyond a 64-bit nice value
    by(browser, "#spawn-submit").click()
    error = until(browser, lambda d: text(d, "#spawn-error"), "the spawn error")
    assert error.startswith("spawn: invalid request: priority") and "integer" in error
    assert len(httpx.get(f"{daemon}/v1/procs", params={"all": "true"}, headers=AUTH).json()["data"]) == before

    by(browser, "#logout").click()
    until(browser, lambda d: by(d, "#token").is_displayed(), "the login form after logging out")
    assert browser.execute_script("return sessionStorage.getItem('llmasos-token')") is None
    browser.refresh()
    until(browser, lambda d: by(d, "#token").is_displayed(), "the login form after a reload")


def test_the_event_stream_over_a_socket_starts_with_the_whole_table(daemon: str) -> None:
    with httpx.stream("GET", f"{daemon}/v1/console/events", params={"interval": 0.2}, headers=AUTH,
                      timeout=WAIT) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "event: hello"
        hello = json.loads(next(lines).removeprefix("data: "))
        assert {"procs", "stats", "policies", "context_window"} <= set(hello)
        assert next(lines) == "" and next(lines) == "event: stats"


def test_llmasos_console_prints_the_url_without_the_token(daemon: str, tmp_path: Path) -> None:
    env = daemon_env(tmp_path) | {"LLMASOS_API_TOKEN": TOKEN}
    done = subprocess.run([*LLMASOS, "console", "--url", daemon, "--no-open"], capture_output=True, text=True,
                          check=False, env=env, cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"llmasos console: {daemon}/" and TOKEN not in done.stdout + done.stderr
