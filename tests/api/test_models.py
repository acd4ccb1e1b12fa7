"""Several models over HTTP: /v1/models lists them, the OpenAI endpoint routes by "model",
/v1/stats/models gives each one's queue, and caps bodies restrict them."""

from __future__ import annotations

import json

from llmasos.client.remote import RemoteClient
from llmasos.engine.fake import FakeEngine


def two() -> dict:
    small = FakeEngine(context_window=512, responder=lambda seq: "small reply")
    big = FakeEngine(context_window=8192, responder=lambda seq: "big reply")
    small.name, big.name = "tiny-engine", "big-engine"
    return {"models": {"small": small, "big": {"engine": big, "policy": "rr"}}}


USER = [{"role": "user", "content": "hi"}]


async def test_v1_models_lists_every_loaded_model(served) -> None:
    async with served(**two()) as s:
        data = (await s.http.get("/v1/models")).json()["data"]
        assert [(m["id"], m["owned_by"], m["engine"], m["context_window"], m["default"]) for m in data] == [
            ("small", "llmasos", "fake", 512, True), ("big", "llmasos", "fake", 8192, False)]
        everything = (await s.http.get("/v1/models", params={"all": "true"})).json()["data"]
        assert [m["id"] for m in everything[:2]] == ["small", "big"]
        assert everything[1]["status"] == "loaded"


async def test_chat_completions_route_by_model(served) -> None:
    async with served(**two()) as s:
        r = await s.http.post("/v1/chat/completions", json={"model": "big", "messages": USER, "max_tokens": 5})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "big" and r.json()["choices"][0]["message"]["content"] == "big reply"
        r = await s.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 5})
        assert r.json()["model"] == "small" and r.json()["choices"][0]["message"]["content"] == "small reply"
        r = await s.http.post("/v1/completions", json={"model": "big", "prompt": "x", "max_tokens": 5})
        assert r.json()["model"] == "big" and r.json()["choices"][0]["text"] == "big reply"
        body = {"model": "big", "messages": USER, "max_tokens": 5, "stream": True}
        async with s.http.stream("POST", "/v1/chat/completions", json=body) as streamed:
            chunks = [json.loads(line[6:]) async for line in streamed.aiter_lines()
                      if line.startswith("data: {")]
        assert {c["model"] for c in chunks} == {"big"}
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "big reply"


async def test_an_unknown_model_is_a_404_listing_the_loaded_ones(served) -> None:
    async with served(**two()) as s:
        for name in ("gpt-4", "x" * 10_000, "big; DROP TABLE", "../../etc/passwd"):
            r = await s.http.post("/v1/chat/completions", json={"model": name, "messages": USER})
            assert r.status_code == 404, r.text
            error = r.json()["error"]
            assert error["code"] == "NoSuchModel" and "small, big" in error["message"]
            assert len(error["message"]) < 400
        r = await s.http.post("/v1/chat/completions", json={"model": 42, "messages": USER})
        assert r.status_code in (400, 422)
        r = await s.http.post("/v1/chat/completions", json={"model": ["big"] * 100_000, "messages": USER})
        assert r.status_code in (400, 422)


async def test_a_single_model_kernel_answers_any_model_name(served) -> None:
    async with served() as s:
        r = await s.http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER, "max_tokens": 5})
        assert r.status_code == 200 and r.json()["model"] == "fake"


async def test_request_caps_restrict_the_openai_endpoint(served) -> None:
    async with served(**two(), request_caps={"models": ["small"]}) as s:
        r = await s.http.post("/v1/chat/completions", json={"model": "big", "messages": USER})
        assert r.status_code == 403 and "may not use model 'big'" in r.json()["error"]["message"]
        r = await s.http.post("/v1/chat/completions", json={"model": "small", "messages": USER, "max_tokens": 5})
        assert r.status_code == 200


async def test_stats_models_and_the_remote_client(served) -> None:
    async with served(**two()) as s:
        await s.http.post("/v1/chat/completions", json={"model": "big", "messages": USER, "max_tokens": 5})
        rows = (await s.http.get("/v1/stats/models")).json()["data"]
        assert [(r["name"], r["policy"], r["running"], r["waiting"]) for r in rows] == [
            ("small", "fifo", 0, 0), ("big", "rr", 0, 0)]
        assert rows[0]["tokens"] == 0 and rows[1]["tokens"] >= 2 and rows[0]["default"]
        remote = RemoteClient("http://llmasos.test", token="test-token", transport=s.transport())
        async with remote:
            stats = await remote.model_stats()
        assert [m.name for m in stats] == ["small", "big"] and stats[1].tokens == rows[1]["tokens"]


async def test_spawn_caps_body_takes_models(served) -> None:
    async with served(**two()) as s:
        r = await s.http.post("/v1/procs", json={"app": "echo", "args": ["x"], "caps": {"models": ["big"]}})
        assert r.status_code == 201, r.text
        assert s.kernel.info(r.json()["pid"]).caps["models"] == ["big"]
        for caps, status in (({"models": ["ghost"]}, 404), ({"models": 3}, 422), ({"models": [1]}, 422),
                             ({"models": ["x" * 1000] * 1000}, 404)):
            r = await s.http.post("/v1/procs", json={"app": "echo", "args": ["x"], "caps": caps})
            assert r.status_code == status, (caps, r.text)


async def test_put_sched_switches_one_model(served) -> None:
    async with served(**two()) as s:
        r = await s.http.put("/v1/sched", json={"policy": "fair", "model": "big"})
        assert r.status_code == 200, r.text
        assert [(m.name, m.policy) for m in s.kernel.models] == [("small", "fifo"), ("big", "fair")]
        r = await s.http.put("/v1/sched", json={"policy": "fair", "model": "ghost"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "NoSuchModel"
        r = await s.http.put("/v1/sched", json={"policy": "fair", "model": 7})
        assert r.status_code == 422
        r = await s.http.put("/v1/sched", json={"policy": "rr"})
        assert [m.policy for m in s.kernel.models] == ["rr", "rr"]


async def test_v1_models_all_gives_the_library_models_state_and_the_endpoint_loads_one(
        served, tmp_path, monkeypatch) -> None:
    from llmasos.engine import library
    from llmasos.engine.library import Card
    from llmasos.kernel import models as kmodels

    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "lib"))
    for name in ("extra", "half"):
        (tmp_path / name).mkdir()
        library.register(Card(name, str(tmp_path / name), "registered"))
    (tmp_path / "half" / "adapter_config.json").write_text("{}")
    (tmp_path / "half" / "llmasos-adapter.json").write_text('{"steps": 1, "total_steps": 4}')
    extra = FakeEngine(responder=lambda seq: "extra reply")
    real = kmodels.open_engine

    async def open_engine(spec, **options):
        return extra if spec == "extra" else await real(spec, **options)

    monkeypatch.setattr(kmodels, "open_engine", open_engine)
    async with served(**two()) as s:
        rows = {m["id"]: m for m in (await s.http.get("/v1/models", params={"all": "true"})).json()["data"]}
        assert (rows["small"]["state"], rows["extra"]["state"], rows["half"]["state"]) == (
            "loaded", "loadable", "broken")
        assert "unfinished (1/4 steps)" in rows["half"]["reason"] and "broken" in rows["half"]["status"]
        assert [m["id"] for m in (await s.http.get("/v1/models")).json()["data"]] == ["small", "big"]
        r = await s.http.post("/v1/chat/completions", json={"model": "extra", "messages": USER, "max_tokens": 5})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "extra reply"
        r = await s.http.post("/v1/chat/completions", json={"model": "half", "messages": USER, "max_tokens": 5})
        assert r.status_code == 404 and "unfinished" in r.json()["error"]["message"]
        rows = {m["id"]: m for m in (await s.http.get("/v1/models", params={"all": "true"})).json()["data"]}
        assert rows["extra"]["state"] == "loaded" and rows["extra"]["engine"] == "fake"
        for hostile in ("maybe", "", "1" * 10_000):
            r = await s.http.get("/v1/models", params={"all": hostile})
            assert r.status_code == 422, (hostile, r.text)
