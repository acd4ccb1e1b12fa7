"""The summarize app: one child per chunk (their generates batch), then one combining generate."""

from __future__ import annotations

import re

import pytest

from llmasos.apps.summarize import chunks
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.errors import InvalidArguments
from tests.conftest import make_kernel


def _engine(pad: int = 0) -> FakeEngine:
    """Each chunk's summary names the chunk's first word (then pad more words, so that a child
    generates for long enough that its siblings join its forward steps on a loaded machine); the
    combined one lists the parts it got."""
    def reply(seq) -> str:
        text = seq.messages[-1]["content"]
        if text.startswith("Combine"):
            return "all: " + " ".join(re.findall(r"^- sum (\w+)", text, re.MULTILINE))
        return "sum " + text.split("\n\n", 1)[1].split()[0] + " etc" * pad
    return FakeEngine(step_delay=0.001, responder=reply)


def _text(n: int) -> str:
    """n paragraphs of ~300 characters, each starting with its own word."""
    return "\n\n".join(f"part{i} " + "lorem ipsum dolor sit amet " * 11 for i in range(n))


async def _run(tmp_path, engine, *words, stdin: str | None = None, **kwargs):
    async with make_kernel(tmp_path, engine=engine) as k:
        pid = await k.spawn("summarize", *words, **kwargs)
        if stdin is not None:
            k.write_stdin(pid, stdin)
            k.close_stdin(pid)
        await k.get(pid).done.wait()
        out = "".join(t for s, t in k.output(pid) if s == "stdout")
        procs = k.ps(all=True)
        return await k.wait(pid), out, procs


def test_chunks_cut_at_white_space_and_never_exceed_the_size():
    assert chunks("", 10) == [] and chunks("  \n ", 10) == []
    assert chunks("aa bb cc dd", 5) == ["aa bb", "cc dd"]
    assert chunks("x" * 12 + " y", 5) == ["xxxxx", "xxxxx", "xx y"]
    assert chunks("aa\n\nbb\n \ncc dd ee", 6) == ["aa\n\nbb", "cc dd", "ee"]  # whole paragraphs first
    text = _text(7)
    for size in (200, 400, 700):
        pieces = chunks(text, size)
        assert all(len(p) <= size for p in pieces) and " ".join(" ".join(pieces).split()) == " ".join(text.split())


async def test_a_file_on_stdin_is_summarized_by_one_child_per_chunk_then_combined(tmp_path):
    engine = _engine(pad=40)
    status, out, _ = await _run(tmp_path, engine, stdin=_text(4), chunk_chars=400)
    assert status.state == "exited", status.error
    assert status.value == "all: part0 part1 part2 part3"
    assert out == "all: part0 part1 part2 part3\n"
    # The four chunk prompts came from four processes, and shared forward steps.
    chunk_prompts = [p for p in engine.prompts if "Summarize" in p]
    assert len(chunk_prompts) == 4
    assert max(len(set(b)) for b in engine.batches) == 4


async def test_a_short_text_is_summarized_without_children(tmp_path):
    engine = _engine()
    status, out, procs = await _run(tmp_path, engine, "tiny", "text", "here")
    assert status.state == "exited", status.error
    assert status.value == "sum tiny" and out == "sum tiny\n"
    assert [p.app for p in procs] == ["summarize"] and len(engine.prompts) == 1  # no child was spawned


async def test_no_text_at_all_is_a_clear_error(tmp_path):
    status, _, _ = await _run(tmp_path, _engine(), stdin="\n  \n")
    assert status.state == "crashed"
    assert "NoInput: summarize: there is no text to summarize; give it as words or on stdin" in status.error


async def test_more_chunks_than_max_children_fails_before_any_child_starts(tmp_path):
    engine = _engine()
    status, _, procs = await _run(tmp_path, engine, stdin=_text(6), chunk_chars=400, caps={"max_children": 3})
    assert status.state == "crashed"
    assert "TooMuchInput: summarize: the text makes at least 4 chunks of 400 characters, and this process " \
           "may run 3 children at once" in status.error
    assert [p.app for p in procs] == ["summarize"] and engine.prompts == []


async def test_a_spawner_that_denies_spawning_gets_a_clear_error_for_a_long_text(tmp_path):
    status, _, _ = await _run(tmp_path, _engine(), _text(3), chunk_chars=400, caps={"can_spawn": False})
    assert status.state == "crashed"
    assert "may run 0 children at once (its max_children, or it may not spawn)" in status.error


async def test_a_failed_chunk_fails_the_summary_and_kills_the_other_children(tmp_path):
    engine = _engine()
    engine.fail = lambda seq: RuntimeError("bad chunk") if "part1" in str(seq.messages) else None
    status, _, procs = await _run(tmp_path, engine, _text(3), chunk_chars=400)
    assert status.state == "crashed"
    assert re.search(r"ChildFailed: summarize: the child summarizing chunk 2 \(pid \d+\) crashed: "
                     r".*bad chunk", status.error)
    children = [p for p in procs if p.app == "summarize.part"]
    assert children and all(p.state in ("exited", "killed") for p in children)


@pytest.mark.parametrize("kwargs", [{"chunk_chars": 0}, {"chunk_chars": -5}, {"chunk_chars": 10**12},
                                    {"max_tokens": 0}, {"max_tokens": "many"}])
async def test_bad_sizes_are_refused_before_the_process_starts(tmp_path, kwargs):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(InvalidArguments, match=r"summarize: bad value .* usage: summarize \[WORDS\.\.\.\]"):
            await k.spawn("summarize", "text", **kwargs)
