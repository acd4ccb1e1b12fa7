"""Every shell command against an in-process kernel on the FakeEngine, typed through a pipe."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

APPS = Path(__file__).parent.parent / "apps_for_tests.py"
SLEEPER, FLOOD, CRASH, TICKER = (f"{APPS}:{name}" for name in ("sleeper", "flood", "crash", "ticker"))
CTRL_C, CTRL_D, DETACH = "\x03", "\x04", "\x1d"


# -- help, parsing errors and the prompt's keys ----------------------------------------------------------


async def test_help_lists_every_command(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("help", r"help COMMAND for details")
        for name in ("apps", "spawn", "run", "ps", "kill", "wait", "logs", "attach", "top", "strace", "mem",
                     "tools", "sched", "models", "exit"):
            assert f"\n{name}" in sh.text
        await sh.run("help attach", r"usage: attach PID.*Ctrl-\]")
        await sh.run("help spwan", r"did you mean 'spawn'")


async def test_unknown_command_and_bad_arguments(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("spwan echo hi", r"unknown command 'spwan'; did you mean 'spawn'\?")
        await sh.run("kill", r"kill: which pid\?.*usage: kill PID")
        await sh.run("kill abc", r"'abc' is not a pid")
        await sh.run("ps -x", r"unknown option '-x'")
        await sh.run('spawn echo "unclosed', r"cannot parse")
        await sh.run("spawn nosuchapp", r"no app named 'nosuchapp'")
        await sh.run("spawn chta", r"did you mean 'chat'")
        await sh.run("spawn hello a b c d", r"hello: .*usage: hello")
        await sh.run("logs 99", r"no process 99")
        await sh.run("attach 99", r"no process 99")
        await sh.run("sched bogus", r"unknown policy 'bogus'")


async def test_ctrl_c_at_the_prompt_does_not_exit(shell_at) -> None:
    async with shell_at() as sh:
        sh.send("half a line" + CTRL_C)
        await sh.run("ps", r"no processes running")
        assert not sh.done.is_set()


async def test_ctrl_d_exits(shell_at) -> None:
    async with shell_at() as sh:
        sh.send(CTRL_D)
        with anyio.fail_after(5):
            await sh.done.wait()


async def test_ctrl_d_twice_exits_and_kills_running_processes(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {SLEEPER}", r"\[1\]")
        sh.send(CTRL_D)
        await sh.expect(r"1 process still running")
        sh.send(CTRL_D)
        with anyio.fail_after(5):
            await sh.done.wait()
        assert sh.kernel.get(1).state.value == "killed"


async def test_history_is_kept_in_the_home_directory(shell_at, tmp_path: Path) -> None:
    async with shell_at() as sh:
        await sh.run("apps", r"echo")
    assert "apps" in (tmp_path / "shell_history").read_text()


# -- processes -----------------------------------------------------------------------------------------------


async def test_apps(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("apps", r"chat .*Talk with the model.*echo .*hello")


async def test_spawn_prints_the_pid_and_a_notice_when_it_ends(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("spawn echo hi there", r"\[1\] echo")
        await sh.expect(r"\[1\] exited: 'hi there'")
        await sh.run("ps", r"no processes running")
        await sh.run("ps -a", r"1 +0 +echo +exited.*'hi there'")


async def test_spawn_options(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {SLEEPER} 30 --prio 7", r"\[1\] ")
        assert sh.kernel.get(1).priority == 7
        await sh.run("spawn chat --max-tokens=5 --caps can_spawn=no", r"\[2\] chat")
        assert sh.kernel.get(2).kwargs == {"max_tokens": 5}
        await sh.run("spawn chat --caps bogus=1", r"bad capability 'bogus=1'")
        await sh.run("ps", r"sleeper +waiting:sleep +7.*chat +waiting:stdin")


async def test_kill(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {SLEEPER}", r"\[1\]")
        await sh.run(f"spawn {SLEEPER}", r"\[2\]")
        await sh.run("kill 1 2 77", r"\[1\] sleeper killed.*\[2\] sleeper killed.*no process 77")
        await sh.run("kill 1", r"\[1\] had already ended \(killed\)")
        await sh.run("ps -a", r"1 .*killed.*2 .*killed")
        out = await sh.settle()
        assert "[1] killed" not in out  # kill printed the one notice


async def test_wait_reaps_and_times_out(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {SLEEPER} 0.2", r"\[1\]")
        await sh.run("wait 1", r"\[1\] exited: 'rested'")
        await sh.run("ps -a", r"no processes")
        await sh.run(f"spawn {SLEEPER} 30", r"\[2\]")
        await sh.run("wait 2 -t 0.1", r"process 2 still runs after 0.1s")
        await sh.run("wait x", r"not a pid")


async def test_crash_notice_and_stderr_in_logs(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {CRASH}", r"\[1\]")
        await sh.expect(r"\[1\] crashed: ValueError: something broke \(see logs 1\)")
        await sh.run("logs 1", r"about to fail.*Traceback.*ValueError: something broke")


# -- output ----------------------------------------------------------------------------------------------------


async def test_logs_and_logs_follow(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("spawn echo one", r"exited")
        await sh.run("logs 1", r"one\n")
        await sh.run(f"spawn {TICKER}", r"\[2\]")
        await sh.run("logs 2 -n 1", r"tick \d+\n")
        await sh.run("logs 2 -f", r"tick \d+\n.*tick \d+\n")
        sh.send("q")
        await sh.run("ps", r"ticker +running|ticker +waiting")  # the prompt is back, the ticker runs on
        await sh.run(f"spawn {SLEEPER} 0.3", r"\[3\]")
        await sh.run("logs 3 -f", r"\[3\] exited: 'rested'")  # follow ends by itself
        await sh.run("logs 3", r"has written nothing")


async def test_flood_keeps_the_shell_responsive(shell_at) -> None:
    async with shell_at(stdout_lines=200) as sh:
        await sh.run(f"spawn {FLOOD} 0", r"\[1\]")  # 0: forever
        for follow in ("logs 1 -f", "attach 1"):
            await sh.run(follow, r"line \d+ x+\n", timeout=10)
            sh.send(DETACH if follow.startswith("attach") else "q")
            start = time.monotonic()
            await sh.run("help help", r"usage: help", timeout=10)
            assert time.monotonic() - start < 3
        await sh.run("kill 1", r"\[1\] flood killed")
        assert len(sh.kernel.output(1)) <= 200  # the kernel's log is bounded too


async def test_output_faster_than_the_screen_is_dropped_with_a_note() -> None:
    from llmasos.shell.attach import MAX_PENDING, batched

    written: list[str] = []

    class Screen:
        def out(self, text: str) -> None:
            written.append(text)

    async def burst():
        for i in range(20000):
            yield f"line {i} " + "x" * 60 + "\n"

    await batched(Screen(), burst(), "logs 1 keeps the latest")  # type: ignore[arg-type]
    text = "".join(written)
    assert "characters not shown; logs 1 keeps the latest" in text
    assert len(text) < 2 * MAX_PENDING
    assert text.endswith("line 19999 " + "x" * 60 + "\n")  # the newest output is what shows


async def test_strace(shell_at) -> None:
    async with shell_at() as sh:
        sh.engine.enqueue("Fine, thanks.")
        await sh.run("spawn chat", r"\[1\] chat")
        await sh.run("strace 1", r"")
        await anyio.sleep(0.1)
        sh.kernel.write_stdin(1, "how are you?\n")
        await sh.expect(r"\[1\] read\w*\([^\n]*\) = 'how are you\?\\n' <\d\.\d+s>")
        await sh.expect(r"\[1\] generate\([^\n]*messages=[^\n]*\) = ")
        await sh.expect(r"\[1\] write\([^\n]*text='Fine, ")
        sh.send("q")
        await sh.run("strace 9", r"no process 9")
        await sh.run("spawn echo x", r"exited")
        await sh.run("strace 2", r"process 2 \(echo\) has exited")


# -- attach and run -------------------------------------------------------------------------------------


async def test_attach_talk_and_detach(shell_at) -> None:
    async with shell_at() as sh:
        sh.engine.enqueue("Paris is the capital of France.", "You are welcome.")
        await sh.run("spawn chat", r"\[1\] chat")
        await sh.run("attach 1", r"attached to \[1\] chat.*Ctrl-\] detaches")
        sh.line("What is the capital of France?")
        await sh.expect(r"Paris is the capital of France\.\n")
        sh.send(DETACH)
        await sh.expect(r"detached from \[1\]; it keeps running")
        await sh.run("ps", r"1 .*chat +waiting:stdin")
        await sh.run("attach 1", r"attached")
        await sh.expect(r"Paris is the capital")  # recent output is shown again
        sh.line("thanks")
        await sh.expect(r"You are welcome\.")
        sh.send(CTRL_D)  # on an empty line: detach
        await sh.expect(r"detached from \[1\]")
        await sh.run("kill 1", r"\[1\] chat killed")
        await sh.run("attach 1", r"attach: process 1 \(chat\) has killed; logs 1 shows its output")


async def test_attach_sends_words_that_look_like_keys_as_text(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("spawn chat", r"\[1\] chat")
        await sh.run("attach 1", r"attached")
        sh.line("detach")
        await sh.expect(r"user: detach\n")  # the FakeEngine echoes the conversation
        sh.send(DETACH)
        await sh.expect(r"detached from \[1\]")


async def test_attach_sees_the_process_end(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {SLEEPER} 0.3", r"\[1\]")
        await sh.run("attach 1", r"attached")
        await sh.expect(r"\[1\] exited: 'rested'")
        await sh.run("ps", r"no processes running")


async def test_run_in_the_foreground(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("run echo hello world", r"hello world\n.*\[1\] exited: 'hello world'")
        await sh.run("ps -a", r"no processes")  # run reaps
        await sh.run("run nosuch", r"no app named")


async def test_run_chat_then_ctrl_d_ends_its_input(shell_at) -> None:
    async with shell_at() as sh:
        sh.engine.enqueue("Hi!")
        await sh.run("run chat", r"")
        await anyio.sleep(0.1)
        sh.line("hello")
        await sh.expect(r"Hi!\n")
        sh.send(CTRL_D)
        await sh.expect(r"\[1\] exited: 1")


async def test_run_ctrl_c_kills_and_ctrl_bracket_backgrounds(shell_at) -> None:
    async with shell_at() as sh:
        sh.line(f"run {SLEEPER}")
        await anyio.sleep(0.2)
        sh.send(CTRL_C)
        await sh.expect(r"\[1\] killed")
        sh.line(f"run {SLEEPER} 0.5")
        await anyio.sleep(0.2)
        sh.send(DETACH)
        await sh.expect(r"\[2\] moved to the background")
        await sh.expect(r"\[2\] exited: 'rested'")


# -- the kernel ------------------------------------------------------------------------------------------


async def test_top_once_and_live(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("spawn chat", r"\[1\]")
        await sh.run("top -n 1", r"llmasos top .*engine fake .*policy fifo.*batch \d+/\d+ .*queued 0 .*tok/s"
                                 r".*PID +APP +STATE.*1 +chat +waiting:stdin")
        sh.line("top -d 0.05")
        await anyio.sleep(0.3)
        sh.send("x")
        await sh.run("help help", r"usage: help")  # top returned on the key
        await sh.run("top -d 0", r"-d must be above 0")


async def test_sched_show_and_switch(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("sched", r"policy: fifo")
        await sh.run("sched rr", r"policy: rr")
        assert sh.kernel.policy == "rr"


async def test_models_tools_and_mem(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run("models", r"MODEL .*fake \(default\) +fake +fake +fifo +0/0")
        await sh.run("models -a", r"fake .*loaded")
        sh.line("tools")
        await sh.expect(r"TOOL|no tools|no tool registry")
        await sh.run("spawn chat", r"\[1\]")
        await sh.run("mem 1", r"context|memory")
        await sh.run("mem 42", r"no process 42")


async def test_exit_asks_when_processes_run(shell_at) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {SLEEPER}", r"\[1\]")
        await sh.run("exit", r"1 process still running \(1\); exiting kills it\.")
        sh.line("n")
        await sh.expect(r"not exiting")
        await sh.run("exit", r"still running")
        sh.line("y")
        with anyio.fail_after(5):
            await sh.done.wait()


async def test_processes_resumed_after_a_restart_are_announced(shell_at, tmp_path: Path) -> None:
    async with shell_at() as sh:
        await sh.run(f"spawn {SLEEPER} 0.5", r"\[1\]")
        sh.shell.quiet.add(1)
    # the kernel stopped with pid 1 alive (as if it had crashed): the next one resumes it
    async with shell_at() as sh:
        await sh.expect(r"1 process resumed from the last session: \[1\] sleeper")
        await sh.expect(r"\[1\] exited: 'rested'")


async def test_exit_without_processes_and_quit_alias(shell_at) -> None:
    async with shell_at() as sh:
        sh.line("quit")
        with anyio.fail_after(5):
            await sh.done.wait()
