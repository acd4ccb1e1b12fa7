"""The seed's API: LLM.from_pretrained / generate_text / chat and Application routes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from llmasos import LLM, Application, KernelConfig
from llmasos.api.llm import LLMUsageError
from llmasos.engine.errors import ModelNotFound
from llmasos.engine.fake import FakeEngine

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_generate_text_from_a_plain_script_uses_a_private_kernel():
    engine = FakeEngine()
    engine.enqueue("Paris.", "Fine, thanks.")
    model = LLM(engine=engine)
    try:
        assert model.generate_text("Capital of France?", max_length=10) == "Paris."
        assert model.chat([{"role": "user", "content": "How are you?"}]) == "Fine, thanks."
    finally:
        model.close()
    assert engine.prompts == ["Capital of France?", "user: How are you?"]


def test_max_length_is_validated():
    model = LLM(engine=FakeEngine())
    with pytest.raises(ValueError, match="max_length must be at least 1"):
        model.generate_text("x", max_length=0)


async def test_blocking_call_on_the_event_loop_is_refused():
    model = LLM(engine=FakeEngine())
    with pytest.raises(LLMUsageError, match="agenerate_text"):
        model.generate_text("x")


def test_unknown_model_fails_fast_with_offline_options():
    t0 = time.monotonic()
    with pytest.raises(ModelNotFound) as err:
        LLM.from_pretrained("gpt2-does-not-exist-anywhere")
    assert time.monotonic() - t0 < 5
    assert "smollm2-135m" in str(err.value)


async def test_application_routes_run_as_processes(tmp_path):
    engine = FakeEngine()
    model = LLM(engine=engine)
    app = Application(model, config=KernelConfig(engine=engine, home=tmp_path))

    @app.route("/ask")
    def ask(question):
        return model.generate_text(question, max_length=100)

    @app.route("/add")
    def add(a: int, b: int = 1):
        return {"sum": a + b}

    @app.route("/fail")
    async def fail():
        raise RuntimeError("handler broke")

    port = _free_port()
    engine.enqueue("An operating system manages resources.")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: app.serve("127.0.0.1", port, log_level="warning"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            with anyio.fail_after(10):
                while True:
                    try:
                        r = await client.get("/ask", params={"question": "What is an OS?"})
                        break
                    except httpx.ConnectError:
                        await anyio.sleep(0.05)
            assert r.status_code == 200 and r.text == "An operating system manages resources.", r.text
            assert engine.prompts[-1] == "What is an OS?"
            r = await client.post("/add", json={"a": "40", "b": 2})
            assert r.json() == {"sum": 42}
            r = await client.get("/add")
            assert r.status_code == 422 and "missing a required argument: 'a'" in r.json()["error"]
            r = await client.get("/add", params={"a": "x"})
            assert r.status_code == 422 and "bad value 'x' for a" in r.json()["error"]
            r = await client.get("/fail")
            assert r.status_code == 500 and "handler broke" in r.json()["error"]
            r = await client.post("/add", content=b"not json")
            assert r.status_code == 400
        ps = app.kernel.ps(all=True)
        assert ps == []  # every request process was reaped
        app.stop()


@pytest.mark.slow
def test_seed_example_runs_as_written_on_the_default_model(tmp_path):
    port = _free_port()
    script = (ROOT / "examples" / "seed.py").read_text().replace("app.run()", f"app.run(port={port})")
    path = tmp_path / "seed.py"
    path.write_text(script)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/ask", params={"question": "What is the capital of France?"},
                              timeout=120)
                break
            except httpx.ConnectError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode())
                time.sleep(0.5)
        assert r.status_code == 200
        assert "Paris" in r.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


SEED_ON_FAKE = """\
import sys, time
from llmasos import LLM, Application
from llmasos.engine.fake import FakeEngine


class SlowLoading(LLM):
    @property
    def engine(self):
        if self._engine is None:
            print("loading", flush=True)
            time.sleep(float(sys.argv[2]))
            self._engine = FakeEngine()
        return self._engine


model = SlowLoading()
app = Application(model)


@app.route("/ask")
def ask(question):
    return model.generate_text(question, max_length=100)


app.run(port=int(sys.argv[1]))
"""


def _seed_in_a_terminal(tmp_path, load_seconds: float):
    import pexpect

    path = tmp_path / "seed_fake.py"
    path.write_text(SEED_ON_FAKE)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "tmux-256color", "LLMASOS_HOME": str(tmp_path / "home")}
    child = pexpect.spawn(sys.executable, [str(path), str(port), str(load_seconds)], cwd=str(tmp_path), env=env,
                          encoding="utf-8", timeout=20)
    return child, port


def _stop(child, stop: str) -> str:
    """Ctrl-C or SIGTERM; what the application printed from then on (it must exit 0 within 20 s)."""
    import pexpect

    try:
        if stop == "ctrl-c":
            child.sendintr()
        else:
            child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF)
        tail = child.before
    finally:
        child.close(force=True)
    assert "Traceback" not in tail and "KeyboardInterrupt" not in tail, tail
    assert child.exitstatus == 0
    return tail.replace("^C", "").strip()


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_a_serving_application_with_one_line(tmp_path, stop):
    child, port = _seed_in_a_terminal(tmp_path, 0)
    child.expect("loading\r\n")
    child.expect(r"llmasos: serving http://127\.0\.0\.1:\d+ \(routes: /ask\); Ctrl-C stops\r\n")
    r = httpx.get(f"http://127.0.0.1:{port}/ask", params={"question": "hi"}, timeout=10)
    assert r.text == "echo: hi"
    assert _stop(child, stop) == "llmasos: stopped"


def test_ctrl_c_while_the_model_loads_stops_the_application_cleanly(tmp_path):
    child, _port = _seed_in_a_terminal(tmp_path, 2)
    child.expect("loading\r\n")
    time.sleep(0.5)  # the load (2 s) has begun
    assert _stop(child, "ctrl-c") == "llmasos: stopped"
