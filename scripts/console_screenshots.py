"""Take the screenshots of docs/console.md: a daemon on a slowed FakeEngine (so the charts have
something to show), a few chats at work, headless Chromium through selenium.

    .venv/bin/python scripts/console_screenshots.py [docs/img]

Needs chromium, chromedriver and selenium, as tests/api/test_console.py does.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from llmasos.api.http import serve
from llmasos.engine.fake import FakeEngine
from llmasos.kernel import KernelConfig

TOKEN = "screenshots"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANSWER = ("An operating system shares a machine among programs: it schedules them, isolates them, "
          "and gives each a simple view of files, memory and devices. ") * 2


FAMILY = """
from llmasos.apps.app import App

app = App("family", "A parent: spawn two chats as children and wait for them", can_spawn=True)


@app.main
async def main(sys, n: int = 2):
    pids = [await sys.spawn("chat", max_tokens=20) for _ in range(n)]
    for pid in pids:
        await sys.wait(pid)
"""


def drive(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,760", "--hide-scrollbars"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    find = lambda css: d.find_element(By.CSS_SELECTOR, css)
    try:
        d.get(url + "/")
        find("#token").send_keys(TOKEN)
        find("#login-submit").click()
        time.sleep(1)
        http = httpx.Client(base_url=url, headers=AUTH, timeout=10)
        pids = [http.post("/v1/procs", json={"app": "chat", "kwargs": {"max_tokens": 40}, "priority": i,
                                             "caps": {"token_budget": 20000} if i % 2 else {}}).json()["pid"]
                for i in range(4)]
        http.post("/v1/procs", json={"app": "echo", "args": ["hello", "console"]})
        family = Path(tempfile.mkdtemp()) / "family.py"
        family.write_text(FAMILY)
        http.post("/v1/procs", json={"app": str(family)})
        for round_ in range(6):
            if round_ == 3:
                http.put("/v1/sched", json={"policy": "priority"})
            for pid in pids:
                http.post(f"/v1/procs/{pid}/stdin", json={"text": f"What is an operating system? ({round_})\n"})
            time.sleep(1.2)
        find('#nav button[data-tab="model"]').click()
        time.sleep(1)
        d.save_screenshot(str(out / "console-model.png"))
        find('#nav button[data-tab="procs"]').click()
        find("#tree").click()
        time.sleep(0.5)
        d.save_screenshot(str(out / "console-processes.png"))
        find(f'#proc-table tr[data-pid="{pids[0]}"]').click()
        http.post(f"/v1/procs/{pids[0]}/stdin", json={"text": "And what is a syscall?\n"})
        time.sleep(3)
        find("#trace-filter").send_keys("read")
        time.sleep(0.3)
        d.save_screenshot(str(out / "console-process.png"))
        find('#nav button[data-tab="apps"]').click()
        find('#apps-list details[data-app="chat"]').click()
        d.save_screenshot(str(out / "console-apps.png"))
        for pid in pids:
            http.delete(f"/v1/procs/{pid}")
    finally:
        d.quit()


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    engine = FakeEngine(step_delay=0.03, responder=lambda seq: ANSWER)
    config = KernelConfig(engine=engine, home=Path(tempfile.mkdtemp()))
    ready = anyio.Event()
    where: list[str] = []

    def on_ready(url: str, _stats: object) -> None:
        where.append(url)
        ready.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(config, port=0, token=TOKEN, on_ready=on_ready))
        await ready.wait()
        await anyio.to_thread.run_sync(drive, where[0], out)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
