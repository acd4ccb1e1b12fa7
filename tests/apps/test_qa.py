"""The qa app: documents kept as passages in memory, retrieved by search, cited in the answer."""

from __future__ import annotations

import re

import pytest

from llmasos.apps import qa
from llmasos.engine.fake import FakeEngine
from llmasos.syscalls.errors import InvalidArguments
from tests.conftest import make_kernel

MANUAL = """The kettle boils water in about three minutes. Fill it to the line marked MAX.

The toaster has six browning levels; level three is golden.

Descale the kettle every month with white vinegar."""


def _engine() -> FakeEngine:
    """Answers with the numbers of the passages in its prompt that mention the question's last word."""
    def reply(seq) -> str:
        prompt = seq.messages[-1]["content"]
        word = re.findall(r"\w+", prompt.rsplit("Question:", 1)[1].split("\n")[0])[-1].lower()
        cited = [n for n, text in re.findall(r"^\[(\d+)\] (.*)$", prompt, re.MULTILINE) if word in text.lower()]
        return "It says so " + " ".join(f"[{n}]" for n in cited)
    return FakeEngine(responder=reply)


async def _qa(kernel, *args, stdin: str | None = None, **kwargs):
    pid = await kernel.spawn("qa", *args, **kwargs)
    if stdin is not None:
        kernel.write_stdin(pid, stdin)
        kernel.close_stdin(pid)
    await kernel.get(pid).done.wait()
    out = "".join(t for s, t in kernel.output(pid) if s == "stdout")
    return await kernel.wait(pid), out


async def test_a_document_added_in_one_run_answers_questions_in_the_next_with_citations(tmp_path):
    engine = _engine()
    async with make_kernel(tmp_path, engine=engine) as k:
        added, out = await _qa(k, "add", stdin=MANUAL, source="manual.txt")
        assert added.state == "exited", added.error
        assert len(added.value["passages"]) == 3 and out == "[qa] kept 3 passages of manual.txt\n"
    async with make_kernel(tmp_path, engine=engine) as k:
        status, out = await _qa(k, "ask", "How", "often", "should", "I", "descale", "the", "kettle?")
    assert status.state == "exited", status.error
    answer, sources = status.value["answer"], status.value["sources"]
    assert [s["source"] for s in sources] == ["manual.txt"] * 2  # the two kettle passages, not the toaster
    assert sources[0]["note"] == added.value["passages"][2]  # the best match first: descale + kettle
    prompt = engine.prompts[-1]
    assert "[1] Descale the kettle every month" in prompt and "toaster" not in prompt
    assert answer == "It says so [1] [2]"
    assert out.splitlines() == ["It says so [1] [2]",
                                (f"Sources: [1] manual.txt (note {sources[0]['note']}); "
                                 f"[2] manual.txt (note {sources[1]['note']})")]


async def test_text_given_as_words_and_k_limit_the_passages(tmp_path):
    engine = _engine()
    async with make_kernel(tmp_path, engine=engine) as k:
        await _qa(k, "add", "the", "moon", "is", "far", source="a")
        await _qa(k, "add", "the", "moon", "is", "bright", source="b")
        status, _ = await _qa(k, "ask", "is", "the", "moon", "far?", k=1)
    assert [s["source"] for s in status.value["sources"]] == ["a"]
    assert re.findall(r"\[\d\] .*", engine.prompts[-1]) == ["[1] the moon is far"]


async def test_a_question_nothing_matches_is_answered_without_the_model(tmp_path):
    engine = _engine()
    async with make_kernel(tmp_path, engine=engine) as k:
        await _qa(k, "add", stdin=MANUAL)
        status, out = await _qa(k, "ask", "Where", "is", "Paris?")
    assert status.value == {"answer": None, "sources": []}
    assert out.startswith("I found nothing about that in the documents") and engine.prompts == []


def test_search_terms_drop_stop_words_and_stay_under_the_kernels_limit():
    assert qa.search_terms("What is the boiling time of the Kettle?") == "boiling time kettle"
    assert qa.search_terms("What is it?") == "what is it"  # only stop words: search them all
    long = " ".join(f"word{i}" for i in range(200))
    assert len(qa.search_terms(long).split()) == qa.MAX_TERMS


async def test_a_long_question_is_still_answered(tmp_path):
    async with make_kernel(tmp_path, engine=_engine()) as k:
        await _qa(k, "add", stdin=MANUAL)
        status, _ = await _qa(k, "ask", *[f"w{i}" for i in range(100)], "kettle")
    assert status.state == "exited", status.error


async def test_empty_documents_and_questions_and_huge_documents_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(qa, "MAX_CHARS", 1000)
    async with make_kernel(tmp_path, engine=_engine()) as k:
        empty, _ = await _qa(k, "add", stdin="\n \n")
        assert empty.state == "crashed" and "NoInput: qa: nothing to add" in empty.error
        blank, _ = await _qa(k, "ask", " ")
        assert blank.state == "crashed" and "NoInput: qa: ask what?" in blank.error
        huge, _ = await _qa(k, "add", stdin="word " * 300 + "\n")
        assert huge.state == "crashed" and "TooMuchInput: qa: a document of more than 1,000 characters" in huge.error


@pytest.mark.parametrize("args,kwargs", [(("forget",), {}), (("ask", "x"), {"k": 0}), (("ask", "x"), {"k": 10**6}),
                                         (("ask", "x"), {"max_tokens": 0}), (("add", "x"), {"source": ""}),
                                         (("add", "x"), {"source": "s" * 1000})])
async def test_bad_commands_and_values_are_refused_before_the_process_starts(tmp_path, args, kwargs):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(InvalidArguments, match="usage: qa COMMAND"):
            await k.spawn("qa", *args, **kwargs)
