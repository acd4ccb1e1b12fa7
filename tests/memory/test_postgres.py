"""The storage tests against a real PostgreSQL server (see pg.py for how one is found or started)."""

from __future__ import annotations

import pytest

from llmasos import App, Kernel
from llmasos.memory import migrations
from llmasos.memory.manager import MemoryManager

from .conftest import config, spec
from .pg import postgres_url

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg():
    with postgres_url() as url:
        yield url


async def test_postgres_schema_from_blank_and_every_store_operation(pg, tmp_path):
    mm = await MemoryManager.open(config(tmp_path, database=pg))
    try:
        assert mm.version == len(migrations.MIGRATIONS)
        st = mm.store
        await st.kv_set("ns", "a", {"x": (1, 2)})
        await st.kv_set("ns", "a", {"x": (3,)})
        assert await st.kv_get("ns", "a") == (True, {"x": (3,)})
        assert await st.kv_keys("ns") == ["a"] and await st.kv_delete("ns", "a")
        await st.remember("ns", "Paris is the capital of France; Paris has museums", ("geo",))
        await st.remember("ns", "the weather in Paris is rainy", ())
        await st.remember("ns", "bananas are yellow", ())
        hits = await st.search("ns", "Paris museums", 5)
        assert [h.text for h in hits][0].startswith("Paris is the capital")
        assert len(hits) == 2 and hits[0].score >= hits[1].score
        assert await st.remember("ns", "again", (), "key-1") == await st.remember("ns", "x", (), "key-1")
    finally:
        await mm.close()


async def test_postgres_kernel_journals_and_recovers(pg, tmp_path):
    counter = tmp_path / "counter.txt"
    cfg = dict(database=pg)
    async with Kernel(config(tmp_path, **cfg)) as k:
        pid = await k.spawn(spec("worker"), "pg", 3, str(counter))
        status = await k.wait(pid, timeout=20)
    assert status.ok and status.value["counts"] == [1, 2, 3]

    app = App("pgmem")

    @app.main
    async def main(sys):
        await sys.memory.set("k", "v")
        return await sys.chat("hello")
    async with Kernel(config(tmp_path, **cfg)) as k:
        assert (await k.run(app)).ok
        assert (await k.spawn("echo", "x")) > pid  # the pid counter persisted
