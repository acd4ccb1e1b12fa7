"""llmasos eval: metric math, evaluation files, the score syscall, runs over a client (local and --url),
the report and the figure. Fast tests use the scripted FakeEngine or the tiny random Llama."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from llmasos.client.local import LocalClient
from llmasos.engine.fake import FakeEngine
from llmasos.engine.hf import HFEngine
from llmasos.kernel import Kernel, KernelConfig
from llmasos.syscalls.calls import Score
from llmasos.syscalls.errors import InvalidArguments, NotSupported, QuotaExceeded
from llmasos.toolchain.eval import metrics, report
from llmasos.toolchain.eval.runner import ModelReport, Options, TaskReport, run_model
from llmasos.toolchain.eval.sets import EvalSetError, load_task, suite_tasks
from tests.daemon import LLMASOS, ROOT, daemon_env, start_daemon, stop_daemon

QA = [{"question": "What is the capital of France?", "answers": ["Paris"]},
      {"question": "What color is grass?", "answers": ["green"]},
      {"question": "Who wrote Hamlet?", "answers": ["William Shakespeare", "Shakespeare"]},
      {"question": "What is frozen water called?", "answers": ["ice"]}]
TOOLS = [{"question": "What is 17 times 23?", "tool": "calculator"},
         {"question": "What time is it?", "tool": "clock"},
         {"question": "What is 2 plus 2?", "tool": "calculator"}]
AGENT = [{"question": "What is 17 times 23?", "answer": 391},
         {"question": "What is 6 times 7?", "answer": 42},
         {"question": "What is 9 times 9?", "answer": "eighty"}]
TEXT = "An operating system shares one computer among many programs. " * 12


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def scripted(seq: Any) -> str:
    """A model that knows two QA answers, calls the right tool for arithmetic (the clock never), and
    answers an agent's question from the tool's result."""
    last = (seq.messages or [{"content": seq.prompt}])[-1]
    content = last.get("content") or ""
    if "<tool_response>" in content:
        return f"The answer is {content.split('<tool_response>')[1].split('</tool_response>')[0].strip()}."
    if "capital of France" in content:
        return "Paris"
    if "Hamlet" in content:
        return "It was Shakespeare."
    numbers = re.findall(r"\d+", content)
    if len(numbers) == 2 and "tool" in json.dumps(seq.messages):
        op = "*" if "times" in content else "+"
        return json.dumps({"name": "calculator", "arguments": {"expression": f"{numbers[0]}{op}{numbers[1]}"}})
    return "I do not know."


# -- metrics ------------------------------------------------------------------------------------


def test_normalized_exact_match_and_contains() -> None:
    assert metrics.normalize("  The  Eiffel Tower! ") == "eiffel tower"
    assert metrics.exact_match("the Paris.", ["Paris"]) and not metrics.exact_match("Paris, France", ["Paris"])
    assert metrics.contains("It is Paris, France.", ["London", "Paris"])
    assert not metrics.contains("Parisian food", ["Paris"])  # whole words only
    assert not metrics.contains("anything", ["the"])  # a reference that normalises to nothing never matches


def test_bleu_is_sacrebleus_corpus_bleu() -> None:
    assert metrics.bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]) == pytest.approx(100.0)
    assert metrics.bleu(["a b c d"], [["w x y z"]]) == pytest.approx(0.0)
    # an item with fewer references repeats its first: the same score as giving it once
    two = metrics.bleu(["the cat sat on the mat", "hello there my friend"],
                       [["the cat sat on a mat", "a cat on the mat"], ["hello there my friend"]])
    assert 0 < two < 100
    assert metrics.bleu([], []) == 0.0


def test_numeric_answer_matching() -> None:
    assert metrics.answer_matches("17 * 23 = 391", 391)
    assert metrics.answer_matches("The total is 1,234.", "1234")
    assert metrics.answer_matches("It is 12.5", 12.5) and not metrics.answer_matches("12.6", 12.5)
    assert not metrics.answer_matches("no number here", 3)
    assert metrics.answer_matches("Paris.", "paris") and not metrics.answer_matches("Lyon", "Paris")


def test_perplexity_math() -> None:
    assert metrics.perplexity([math.log(0.5)] * 4) == pytest.approx(2.0)
    assert metrics.perplexity([]) == math.inf
    assert metrics.chunk_perplexities([math.log(0.5)] * 3 + [math.log(0.25)], 3) == pytest.approx([2.0, 4.0])


# -- evaluation files -----------------------------------------------------------------------------


def test_shipped_suites_are_complete_and_default_is_a_sample_of_full() -> None:
    full = {t.kind: t for t in suite_tasks("full")}
    assert list(full) == ["perplexity", "qa", "tools", "agent"]
    assert 2000 < len(full["perplexity"].items[0]["text"]) < 20000
    assert len(full["qa"].items) >= 100 and len(full["tools"].items) >= 50 and len(full["agent"].items) >= 30
    assert len({i["id"] for i in full["qa"].items}) == len(full["qa"].items)
    default = {t.kind: t for t in suite_tasks("default")}  # the quick one: about a minute on the default model
    assert list(default) == list(full)
    for kind in ("qa", "tools", "agent"):
        strip = [{k: v for k, v in i.items() if k != "id"} for i in full[kind].items]
        assert 8 <= len(default[kind].items) < len(full[kind].items)
        assert all({k: v for k, v in i.items() if k != "id"} in strip for i in default[kind].items)
    assert len(suite_tasks("default", limit=3)[1].items) == 3


@pytest.mark.parametrize(("content", "kind", "message"), [
    (None, "qa", "no such file"),
    ("", "qa", "is empty"),
    ("  \n\n", "perplexity", "is empty"),
    ('{"question": "q", "answers": ["a"]}\n{"question": "q2", "answers"\n', "qa", "line 2 is not JSON"),
    ('["a list"]\n', "qa", "not an object"),
    ('{"question": "q"}\n', "qa", "lacks 'answers'"),
    ('{"question": "q", "answers": []}\n', "qa", "non-empty string or list"),
    ('{"question": 3, "answers": "a"}\n', "qa", "'question' must be"),
    ('{"question": "q", "tool": 5}\n', "tools", "'tool' must be"),
    ('{"question": "q", "tool": "clock", "tools": "clock"}\n', "tools", "'tools' must be a list"),
    ('{"question": "q", "answer": true}\n', "agent", "string or a number"),
    ('{"question": "q", "answer": {"x": 1}}\n', "agent", "string or a number"),
    (b"\xff\xfe bad bytes", "perplexity", "not UTF-8"),
])
def test_bad_files_are_clear_errors(tmp_path: Path, content: str | bytes | None, kind: str, message: str) -> None:
    path = tmp_path / "set.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(EvalSetError, match=message):
        load_task(kind, path)


def test_unknown_suite_and_task_and_folder(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="no evaluation suite named 'nope'.*default"):
        suite_tasks("nope")
    with pytest.raises(EvalSetError, match="unknown task"):
        load_task("vibes", tmp_path)
    with pytest.raises(EvalSetError, match="is a folder"):
        load_task("qa", tmp_path)


# -- the score syscall ----------------------------------------------------------------------------


async def test_score_syscall_on_the_fake_engine(tmp_path: Path) -> None:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path, durable=False)) as kernel:
        async with kernel.session("test") as sys:
            scores = await sys.score("one two three four")
            assert scores.tokens == 4 and scores.window == 512 and scores.stride == 256
            assert scores.logprobs == pytest.approx([-math.log(4), -math.log(6), -math.log(5)])
            assert scores.perplexity == pytest.approx(math.exp(scores.nll))


@pytest.mark.parametrize(("call", "error", "message"), [
    (Score(""), InvalidArguments, "non-empty text"),
    (Score(123), InvalidArguments, "non-empty text"),  # type: ignore[arg-type]
    (Score("a b", window=True), InvalidArguments, "window must be"),  # type: ignore[arg-type]
    (Score("a b", window=1), InvalidArguments, "window must be"),
    (Score("a b", window=10**12), InvalidArguments, "window must be"),
    (Score("a b", window="64"), InvalidArguments, "window must be"),  # type: ignore[arg-type]
    (Score("a b", window=64, stride=64), InvalidArguments, "stride must be"),
    (Score("a b", window=64, stride=0), InvalidArguments, "stride must be"),
    (Score("a b", window=64, stride=2.5), InvalidArguments, "stride must be"),  # type: ignore[arg-type]
    (Score("word " * 50), InvalidArguments, "max_score_tokens"),
])
async def test_score_refuses_hostile_arguments(tmp_path: Path, call: Score, error: type, message: str) -> None:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path, durable=False,
                                   max_score_tokens=40)) as kernel:
        async with kernel.session("test") as sys:
            with pytest.raises(error, match=message):
                await sys._trap(call)
            assert (await sys.score("still works")).tokens == 2  # the kernel goes on


async def test_score_counts_against_the_token_budget(tmp_path: Path) -> None:
    async with Kernel(KernelConfig(engine=FakeEngine(), home=tmp_path, durable=False,
                                   request_caps={"token_budget": 10})) as kernel:
        async with kernel.session("test") as sys:
            await sys.score("one two three four five six")
            with pytest.raises(QuotaExceeded, match="token_budget"):
                await sys.score("one two three four five six")


async def test_score_on_an_engine_without_it(tmp_path: Path) -> None:
    class NoScore(FakeEngine):
        score = None  # type: ignore[assignment]

    async with Kernel(KernelConfig(engine=NoScore(), home=tmp_path, durable=False)) as kernel:
        async with kernel.session("test") as sys:
            with pytest.raises(NotSupported, match="does not offer score"):
                await sys.score("a b c")


def _hf_strided_nll(model: Any, ids: list[int], window: int, stride: int) -> float:
    """Reference: transformers' own loss per window (labels masked to the scored block), summed."""
    total, count = 0.0, 0
    for s in range(1, len(ids), stride):
        e = min(s + stride, len(ids))
        a = max(0, e - window)
        inputs = torch.tensor([ids[a:e]])
        labels = inputs.clone()
        labels[:, : s - a] = -100
        with torch.no_grad():
            loss = model(inputs, labels=labels).loss.item()
        total, count = total + loss * (e - s), count + (e - s)
    return total / count


def test_tiny_model_score_matches_transformers_loss(tiny_engine_factory: Any) -> None:
    engine: HFEngine = tiny_engine_factory()
    ids = engine.tokenizer.encode(TEXT, add_special_tokens=True)
    assert len(ids) > 100
    with torch.no_grad():
        loss = engine.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    whole = engine.score(TEXT, 256, 128)  # the text fits one window: every token sees all before it
    assert len(whole) == len(ids) - 1
    assert -sum(whole) / len(whole) == pytest.approx(loss, abs=1e-3)
    for window, stride in ((32, 8), (48, 47), (20, 1)):
        strided = engine.score(TEXT, window, stride)
        assert len(strided) == len(ids) - 1
        assert -sum(strided) / len(strided) == pytest.approx(_hf_strided_nll(engine.model, ids, window, stride),
                                                            abs=1e-3)
    assert engine.score(TEXT, 32, 8) == engine.score(TEXT, 32, 8)


# -- runs over a client ---------------------------------------------------------------------------


def _tasks(tmp_path: Path) -> list[Any]:
    (tmp_path / "text.txt").write_text(TEXT)
    return [load_task("perplexity", tmp_path / "text.txt"), load_task("qa", write_jsonl(tmp_path / "qa.jsonl", QA)),
            load_task("tools", write_jsonl(tmp_path / "tools.jsonl", TOOLS)),
            load_task("agent", write_jsonl(tmp_path / "agent.jsonl", AGENT))]


async def _evaluate(tmp_path: Path, tasks: list[Any], batched: bool = True, **options: Any) -> dict[str, Any]:
    engine = FakeEngine(responder=scripted)
    async with Kernel(KernelConfig(engine=engine, home=tmp_path / "home", durable=False)) as kernel:
        seen: list[str] = []
        result = await run_model(LocalClient(kernel), tasks, Options(**options), seen.append)
        assert sorted(seen) == sorted(t.kind for t in tasks for _ in t.items)
        assert kernel.ps() == []  # every item's process was reaped
        batches = engine.batches
    if batched:  # items ran concurrently: their generates shared steps
        assert max(len(b) for b in batches) > 1
    return report.as_json([result])["models"][0]


async def test_scores_of_a_scripted_model(tmp_path: Path) -> None:
    got = await _evaluate(tmp_path, _tasks(tmp_path))
    by = {t["kind"]: t for t in got["tasks"]}
    assert got["model"] == "fake"
    assert by["qa"]["metrics"]["exact_match"] == 0.25  # "Paris"
    assert by["qa"]["metrics"]["contains"] == 0.5  # and "It was Shakespeare."
    assert 0 < by["qa"]["metrics"]["bleu"] < 100
    assert by["tools"]["metrics"] == {"valid_call_rate": pytest.approx(2 / 3), "right_tool_rate": pytest.approx(2 / 3)}
    assert [i["called"] for i in by["tools"]["items"]] == ["calculator", None, "calculator"]
    agent = by["agent"]
    assert [i["correct"] for i in agent["items"]] == [True, True, False]
    assert [i["steps"] for i in agent["items"]] == [3, 3, 3]  # generate, call_tool, generate
    assert agent["metrics"]["accuracy"] == pytest.approx(2 / 3) and agent["metrics"]["mean_steps"] == 3
    assert agent["metrics"]["mean_tokens"] == pytest.approx(sum(i["tokens"] for i in agent["items"]) / 3)
    assert agent["metrics"]["mean_tokens"] > 0
    ppl = by["perplexity"]
    assert ppl["metrics"]["tokens"] == len(TEXT.split()) and ppl["metrics"]["perplexity"] > 1
    assert ppl["distribution"] and all(v > 1 for v in ppl["distribution"])


async def test_two_runs_give_the_same_scores(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path)
    first = await _evaluate(tmp_path / "a", tasks, concurrency=2)
    second = await _evaluate(tmp_path / "b", tasks, concurrency=8)
    for a, b in zip(first["tasks"], second["tasks"], strict=True):
        assert a["metrics"] == b["metrics"] and a["items"] == b["items"] and a["distribution"] == b["distribution"]


async def test_tiny_model_scores_are_reproducible(tmp_path: Path, tiny_engine_factory: Any) -> None:
    tasks = _tasks(tmp_path)
    runs = []
    for n in range(2):
        engine = tiny_engine_factory()
        async with Kernel(KernelConfig(engine=engine, home=tmp_path / f"h{n}", durable=False)) as kernel:
            runs.append(report.as_json([await run_model(LocalClient(kernel), tasks[:3],
                                                        Options(max_tokens=6, window=64))])["models"][0])
    for a, b in zip(*(r["tasks"] for r in runs), strict=True):
        assert a["metrics"] == b["metrics"] and a["items"] == b["items"]
    assert math.isfinite(runs[0]["tasks"][0]["metrics"]["perplexity"])


async def test_an_item_that_crashes_scores_wrong_and_keeps_its_error(tmp_path: Path) -> None:
    app = tmp_path / "boom.py"
    app.write_text("from llmasos import App\napp = App('boom')\n@app.main\n"
                   "async def main(sys, question: str):\n    raise ValueError('bad day')\n")
    task = load_task("agent", write_jsonl(tmp_path / "agent.jsonl", AGENT[:1]))
    got = await _evaluate(tmp_path, [task, task], batched=False, app=f"{app}:app")
    item = got["tasks"][0]["items"][0]
    assert item["correct"] is False and "ValueError: bad day" in item["error"]


async def test_a_tools_item_offering_an_unknown_tool_fails_alone(tmp_path: Path) -> None:
    rows = [{"question": "What is 2 plus 2?", "tool": "calculator", "tools": ["calculator", "rm -rf /"]}, TOOLS[0]]
    got = await _evaluate(tmp_path, [load_task("tools", write_jsonl(tmp_path / "t.jsonl", rows))], batched=False)
    bad, good = got["tasks"][0]["items"]
    assert bad["valid"] is False and "rm -rf /" in bad["error"]
    assert good["valid"] and good["right"]


async def test_agent_call_validity_and_model_from_reacts_log(tmp_path: Path) -> None:
    """react's log gives each item's valid and invalid calls and its model. The FakeEngine has no
    tokenizer, so no grammar applies even constrained: a broken call is possible either way; with
    --free (react's constrained=False) the prompt still lists the tools."""
    broken = '<tool_call>{"name": "calculator", "arguments": {"expression": "17 *"}}</tool_call>'
    good = '<tool_call>{"name": "calculator", "arguments": {"expression": "17 * 23"}}</tool_call>'
    task = load_task("agent", write_jsonl(tmp_path / "agent.jsonl", AGENT[:1]))
    for free in (False, True):
        engine = FakeEngine()
        engine.enqueue(broken, good, "It is 391.")
        async with Kernel(KernelConfig(engine=engine, home=tmp_path / f"h{free}", durable=False)) as kernel:
            got = (await run_model(LocalClient(kernel), [task], Options(free=free))).tasks[0]
        assert "<tools>" in engine.prompts[0] and "Error:" in engine.prompts[1]
        assert got.metrics["call_validity"] == 0.5 and got.metrics["accuracy"] == 1.0
        assert (got.items[0]["valid_calls"], got.items[0]["invalid_calls"], got.items[0]["model"]) == (1, 1, "default")
        log = got.items[0]["log"]  # react's whole log comes with the item, to read why it went as it did
        assert "[invalid call:" in log and "[calculator({'expression': '17 * 23'}) -> 391]" in log


# -- report and figure ----------------------------------------------------------------------------


async def test_report_json_table_and_plot(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path)
    engine = FakeEngine(responder=scripted)
    async with Kernel(KernelConfig(engine=engine, home=tmp_path / "home", durable=False)) as kernel:
        one = await run_model(LocalClient(kernel), tasks)
    two = ModelReport("other", [TaskReport("qa", "x", {"exact_match": 1.0, "bleu": 50.0})])
    report.write_json([one, two], tmp_path / "r.json", suite=None)
    data = json.loads((tmp_path / "r.json").read_text())
    assert [m["model"] for m in data["models"]] == ["fake", "other"]
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(report.table([one, two]))
    text = console.export_text()
    assert "exact_match" in text and "25.0%" in text and "100.0%" in text and "perplexity" in text
    report.plot([one, two], tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(report.ReportError, match="cannot write the figure"):
        report.plot([one], tmp_path / "no" / "such" / "dir.png")
    with pytest.raises(report.ReportError, match="cannot write"):
        report.write_json([one], tmp_path / "no" / "such.json")


# -- the command ----------------------------------------------------------------------------------


def _cli(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMASOS, "eval", *args], capture_output=True, text=True, cwd=ROOT,
                          env=daemon_env(home), timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    ((), "nothing to evaluate"),
    (("--qa", "/no/such.jsonl"), "no such file: /no/such.jsonl"),
    (("--suite", "nope"), "no evaluation suite named 'nope'"),
    (("--suite", "default", "--url", "http://127.0.0.1:9", "fake"), "drop the model names"),
    (("--suite", "default", "--window", "8", "--stride", "8"), "must be smaller than --window"),
    (("--suite", "default", "--app", "no-such-app"), "--app no-such-app"),
    (("--suite", "default", "--concurrency", "0"), "Invalid value"),
    (("--suite", "default", "--limit", "-3"), "Invalid value"),
    (("--suite", "default", "--free=yes"), "--free"),
])
def test_command_refuses_bad_input_before_any_model_loads(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = _cli(*args, home=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "loading" not in result.stderr


@pytest.mark.parametrize("flag", ["--free", "--no-check"])
def test_agent_flags_need_agent_items(tmp_path: Path, flag: str) -> None:
    result = _cli("fake", "--qa", str(write_jsonl(tmp_path / "qa.jsonl", QA)), flag, home=tmp_path)
    assert result.returncode == 2 and f"{flag} applies to agent items" in result.stderr, result.stderr


async def test_agent_items_run_with_and_without_reacts_call_check(tmp_path: Path) -> None:
    """The check (react's default) replaces a call that leaves out one of the question's numbers by a
    repaired one that uses them all; --no-check runs the model's call."""
    rows = [{"question": "A holiday lasts 19 weeks and 3 days. How many days is that?", "answer": 136}]
    task = load_task("agent", write_jsonl(tmp_path / "agent.jsonl", rows))
    short = '<tool_call>{"name": "calculator", "arguments": {"expression": "19 * 7"}}</tool_call>'
    whole = '<tool_call>{"name": "calculator", "arguments": {"expression": "19 * 7 + 3"}}</tool_call>'
    # (react asks once more under the repair's grammar, and that call passes: no sampling)
    for check, replies, answer in ((True, [short, whole], "136 days."), (False, [short], "133 days.")):
        engine = FakeEngine()
        engine.enqueue(*replies, answer)
        async with Kernel(KernelConfig(engine=engine, home=tmp_path / f"h{check}", durable=False)) as kernel:
            got = (await run_model(LocalClient(kernel), [task], Options(check=check))).tasks[0]
        assert got.metrics["accuracy"] == (1.0 if check else 0.0), got.items
        assert got.metrics["call_validity"] == 1.0


def test_command_over_url_matches_a_local_run(tmp_path: Path) -> None:
    (tmp_path / "text.txt").write_text(TEXT)
    files = ["--perplexity", str(tmp_path / "text.txt"), "--qa", str(write_jsonl(tmp_path / "qa.jsonl", QA)),
             "--agent", str(write_jsonl(tmp_path / "agent.jsonl", AGENT))]  # (react: it answers the echo)
    local = _cli("fake", *files, "--json", str(tmp_path / "local.json"), "--plot", str(tmp_path / "f.png"),
                 home=tmp_path / "h1")
    assert local.returncode == 0, local.stderr
    assert "qa" in local.stdout and "exact_match" in local.stdout
    daemon, url = start_daemon(daemon_env(tmp_path / "h2"))
    try:
        remote = _cli(*files, "--url", url, "--json", str(tmp_path / "remote.json"), home=tmp_path / "h2")
        assert remote.returncode == 0, remote.stderr
        bad = _cli("--qa", str(tmp_path / "qa.jsonl"), "--agent", str(tmp_path / "agent.jsonl"), "--app", "nope",
                   "--url", url, home=tmp_path / "h2")
        assert bad.returncode == 2 and "nope" in bad.stderr
    finally:
        stop_daemon(daemon)
    a, b = (json.loads((tmp_path / f"{n}.json").read_text())["models"][0] for n in ("local", "remote"))
    assert a["model"] == b["model"] == "fake"
    assert [t["metrics"] for t in a["tasks"]] == [t["metrics"] for t in b["tasks"]]
    assert b["tasks"][2]["metrics"]["mean_steps"] == 1  # its one generate, read from the daemon's trace
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_is_registered_and_cheap_to_import() -> None:
    out = subprocess.run([LLMASOS[0], "-c",
                          "import sys, llmasos.cli; print('torch' in sys.modules, 'matplotlib' in sys.modules)"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


# -- the real model (slow) ------------------------------------------------------------------------


@pytest.mark.slow
async def test_real_model_perplexity_matches_transformers_loss(tmp_path: Path) -> None:
    from llmasos.engine import models, worker

    text = suite_tasks("default", ("perplexity",))[0].items[0]["text"].split("\n\n")[0]
    model, tokenizer = worker.call(models.load, "smollm2-135m")
    ids = tokenizer.encode(text, add_special_tokens=True)

    def reference() -> tuple[float, float]:
        with torch.no_grad():
            whole = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
        return whole, _hf_strided_nll(model, ids, 48, 24)

    loss, strided_loss = worker.call(reference)  # before HFEngine swaps in its faster Linear layers
    engine = HFEngine(model, tokenizer, name="smollm2-135m")
    async with Kernel(KernelConfig(engine=engine, home=tmp_path, durable=False)) as kernel:
        async with kernel.session("test") as sys:
            first = await sys.score(text)
            again = await sys.score(text)
            strided = await sys.score(text, window=48, stride=24)
    assert first.tokens == len(ids) > 60 and math.isfinite(first.perplexity)
    assert first == again  # reproducible to the last bit
    assert first.nll == pytest.approx(loss, abs=1e-3)
    assert strided.nll == pytest.approx(strided_loss, abs=1e-3)
    assert strided.nll > first.nll  # less context, less certainty
