"""The notes app: notes kept by one process are found by the next, in this kernel and the next one."""

from __future__ import annotations

import pytest

from llmasos.syscalls.errors import InvalidArguments, PermissionDenied
from tests.conftest import make_kernel


async def _notes(kernel, *args, **kwargs):
    pid = await kernel.spawn("notes", *args, **kwargs)
    await kernel.get(pid).done.wait()
    out = "".join(t for s, t in kernel.output(pid) if s == "stdout")
    return await kernel.wait(pid), out


async def test_notes_persist_across_processes_and_kernel_restarts(tmp_path):
    async with make_kernel(tmp_path) as k:
        first, out = await _notes(k, "add", "buy", "oat", "milk")
        assert first.state == "exited", first.error
        assert out == f"[note {first.value[0]}] kept\n"
        second, _ = await _notes(k, "add", "call the plumber about the sink")
    async with make_kernel(tmp_path) as k:  # a new kernel on the same database
        found, out = await _notes(k, "search", "milk")
        assert found.value == first.value and out == f"[note {first.value[0]}] buy oat milk\n"
        listed, out = await _notes(k, "list")
        assert listed.value == first.value + second.value
        assert out.splitlines() == [f"[note {first.value[0]}] buy oat milk",
                                    f"[note {second.value[0]}] call the plumber about the sink"]
        last, _ = await _notes(k, "list", last=1)
        assert last.value == second.value
        none, out = await _notes(k, "search", "unicorn")
        assert none.value == [] and out == "(no notes)\n"


async def test_search_ranks_and_limits_results(tmp_path):
    async with make_kernel(tmp_path) as k:
        ids = {text: (await _notes(k, "add", text))[0].value[0]
               for text in ["red apple", "red red car", "blue sky", "red shoes"]}
        found, _ = await _notes(k, "search", "red", k=2)
        assert len(found.value) == 2 and found.value[0] == ids["red red car"]  # the best match first
        assert (await _notes(k, "search", "sky"))[1] == f"[note {ids['blue sky']}] blue sky\n"


async def test_a_query_with_search_syntax_is_taken_as_words(tmp_path):
    async with make_kernel(tmp_path) as k:
        await _notes(k, "add", "alpha beta")
        found, _ = await _notes(k, "search", 'alpha" OR NEAR(x) * ) -- ;DROP TABLE notes')
        assert found.state == "exited", found.error
        assert len(found.value) == 1
        assert (await _notes(k, "list"))[0].value == found.value  # the notes are all still there


async def test_empty_notes_and_queries_are_clear_errors(tmp_path):
    async with make_kernel(tmp_path) as k:
        empty, _ = await _notes(k, "add", "  ")
        assert empty.state == "crashed" and "NoInput: notes: nothing to add" in empty.error
        query, _ = await _notes(k, "search")
        assert query.state == "crashed" and "NoInput: notes: search for what?" in query.error
        huge, _ = await _notes(k, "add", "x" * 70_000)
        assert huge.state == "crashed" and "KernelConfig.max_note_size" in huge.error
        listed, out = await _notes(k, "list")
        assert listed.value == [] and out == "(no notes)\n"


@pytest.mark.parametrize("args,kwargs", [(("delete", "x"), {}), ((), {}), (("list",), {"k": 0}),
                                         (("list",), {"last": 10**9}), (("search", "x"), {"k": -1})])
async def test_bad_commands_and_counts_are_refused_before_the_process_starts(tmp_path, args, kwargs):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(InvalidArguments, match="usage: notes COMMAND"):
            await k.spawn("notes", *args, **kwargs)


async def test_only_a_process_granted_the_namespace_reaches_the_notes(tmp_path):
    async with make_kernel(tmp_path) as k:
        denied, _ = await _notes(k, "add", "secret", caps={"memory": []})
        assert denied.state == "crashed" and "PermissionDenied" in denied.error
        assert PermissionDenied.__name__ in denied.error.splitlines()[-1]
