"""The shell over a kernel with several models: `models`, `top`'s per-model rows, `--caps models=`."""

from __future__ import annotations

from llmasos.engine.fake import FakeEngine


def two() -> dict:
    small, big = FakeEngine(context_window=512), FakeEngine(context_window=8192)
    small.name, big.name = "tiny-engine", "big-engine"
    return {"models": {"small": small, "big": {"engine": big, "policy": "rr"}}}


async def test_models_lists_each_loaded_model_with_its_queue_and_rate(shell_at) -> None:
    async with shell_at(**two()) as sh:
        await sh.run("models", r"MODEL +ENGINE +KIND +POLICY +RUN/WAIT +BATCH +TOK/S +TOKENS +CONTEXT")
        await sh.expect(r"small \(default\) +tiny-engine +fake +fifo +0/0 +0/\d+ +0\.0 +0 +512")
        await sh.expect(r"big +big-engine +fake +rr +0/0 +0/\d+ +0\.0 +0 +8192")
        await sh.run("spawn --caps models=big echo hi", r"\[1\]")
        await sh.run("models -a", r"small .*big .*MODEL +SOURCE +STATUS")
        await sh.run("models --all", r"unknown option '--all'")


async def test_top_shows_a_row_per_model(shell_at) -> None:
    async with shell_at(**two()) as sh:
        kernel = sh.kernel
        async with kernel.session("test") as sys:
            await sys.generate("one two three", model="big", max_tokens=5)
        row = r"MODEL .*TOK/S.*small \(default\).*big +big-engine +fake +rr +0/0 +\S+ +\d+\.\d +[1-9]"
        await sh.run("top -n 1", row)


async def test_caps_name_models_and_unknown_ones_are_refused(shell_at) -> None:
    async with shell_at(**two()) as sh:
        await sh.run("spawn --caps models=small echo hi", r"\[1\]")
        assert sh.kernel.info(1).caps["models"] == ["small"]
        await sh.run("spawn --caps models=ghost echo hi", r"not loaded: 'ghost'.*the loaded ones are 'small', 'big'")
        await sh.run("spawn --caps 'models=small,../x,$(rm)' echo hi", r"not loaded: '\$\(rm\)', '../x'")


async def test_sched_switches_one_model_or_every_model(shell_at) -> None:
    async with shell_at(**two()) as sh:
        await sh.run("sched", r"policy: fifo.*models: small fifo, big rr")
        await sh.run("sched fair big", r"policy: fifo.*models: small fifo, big fair")
        await sh.run("sched priority", r"policy: priority.*models: small priority, big priority")
        await sh.run("sched rr ghost", r"no model 'ghost' is loaded")
        await sh.run("sched rr big extra", r"give at most a policy and a model")
