"""Mailboxes and stdio: ordering, timeouts, end of input, bounded logs."""

from __future__ import annotations

import anyio
import pytest

from llmasos import App
from llmasos.syscalls.errors import MailboxFull, NoSuchProcess, RecvTimeout
from tests.conftest import make_kernel

collector = App("collector")


@collector.main
async def _collector(sys, n: int) -> list:
    return [(m.sender, m.body) for m in [await sys.recv() for _ in range(n)]]


producer = App("producer")


@producer.main
async def _producer(sys, to: int, n: int) -> int:
    for i in range(n):
        await sys.send(to, {"i": i})
    return n


async def test_messages_arrive_in_order_with_sender(tmp_path):
    async with make_kernel(tmp_path) as k:
        sink = await k.spawn(collector, 100)
        src = await k.spawn(producer, sink, 100)
        assert (await k.wait(src)).value == 100
        got = (await k.wait(sink)).value
    assert got == [(src, {"i": i}) for i in range(100)]


async def test_root_can_send(tmp_path):
    async with make_kernel(tmp_path) as k:
        sink = await k.spawn(collector, 1)
        k.send(sink, "hello")
        assert (await k.wait(sink)).value == [(0, "hello")]


timed = App("timed")


@timed.main
async def _timed(sys, timeout: float) -> str:
    try:
        await sys.recv(timeout=timeout)
    except RecvTimeout as exc:
        return f"timeout: {exc}"
    return "got one"


async def test_recv_timeout_raises_in_process(tmp_path):
    async with make_kernel(tmp_path) as k:
        status = await k.run(timed, 0.05)
    assert status.value.startswith("timeout: no message arrived within 0.05s")


async def test_send_to_unknown_or_ended_process(tmp_path):
    async with make_kernel(tmp_path) as k:
        with pytest.raises(NoSuchProcess):
            k.send(12345, "x")
        status = await k.run(producer, 999, 1)
        assert status.state == "crashed" and "NoSuchProcess" in status.error


async def test_full_mailbox_is_refused_not_blocking(tmp_path):
    async with make_kernel(tmp_path, mailbox_size=3) as k:
        pid = await k.spawn(timed, 10)
        for i in range(3):
            k.send(pid, i)
        with pytest.raises(MailboxFull, match="3 unread messages"):
            k.send(pid, "overflow")
        k.kill(pid)


reader = App("reader")


@reader.main
async def _reader(sys) -> list:
    lines = []
    while (line := await sys.read()) is not None:
        lines.append(line)
        await sys.write(line.upper())
    return lines


async def test_stdin_lines_then_end_of_input(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(reader)
        k.write_stdin(pid, "one\ntwo\n")
        k.close_stdin(pid)
        status = await k.wait(pid)
        assert status.value == ["one\n", "two\n"]


async def test_follow_streams_output_until_exit(tmp_path):
    async with make_kernel(tmp_path) as k:
        pid = await k.spawn(reader)
        got = []

        async def follow():
            async for stream, text in k.follow(pid):
                got.append((stream, text))

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.sleep(0.01)
            k.write_stdin(pid, "a\nb\n")
            k.close_stdin(pid)
        assert got == [("stdout", "A\n"), ("stdout", "B\n")]
        assert k.output(pid) == got


flood = App("flood")


@flood.main
async def _flood(sys, n: int) -> int:
    for i in range(n):
        await sys.write(f"line {i}\n")
    return n


async def test_output_log_is_bounded(tmp_path):
    async with make_kernel(tmp_path, stdout_lines=50) as k:
        pid = await k.spawn(flood, 1000)
        proc = k.get(pid)
        await proc.done.wait()
        out = k.output(pid)
        assert len(out) == 50
        assert out[-1] == ("stdout", "line 999\n")
        assert proc.output.written == 1000


async def test_write_to_bad_stream_is_invalid(tmp_path):
    bad = App("bad")

    @bad.main
    async def main(sys):
        await sys.write("x", stream="stdlog")

    async with make_kernel(tmp_path) as k:
        status = await k.run(bad)
    assert status.state == "crashed" and "InvalidArguments" in status.error
