"""@tool: schemas derived from signatures and docstrings, the registry, entry points."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest

from llmasos.tools import REGISTRY, Tool, ToolArgumentsInvalid, ToolContext, UnknownTool, tool


def test_schema_comes_from_signature_and_docstring() -> None:
    @tool(register=False)
    def add(a: int, b: int = 2, mode: Literal["fast", "slow"] = "fast") -> int:
        """Add two numbers.

        Args:
            a: the first number
            b: the second number
        """
        return a + b

    schema = add.schema
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "add" and fn["description"] == "Add two numbers."
    params = fn["parameters"]
    assert params["required"] == ["a"]
    assert params["properties"]["a"] == {"type": "integer", "description": "the first number"}
    assert params["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert params["additionalProperties"] is False
    assert add(1, 2) == 3  # still callable as a function


def test_context_parameter_is_hidden_from_the_schema() -> None:
    @tool(register=False)
    def whoami(ctx: ToolContext) -> int:
        """Your pid."""
        return ctx.pid

    assert whoami.context_param == "ctx"
    assert whoami.parameters["properties"] == {}


def test_validate_rejects_wrong_missing_and_extra_arguments() -> None:
    @tool(register=False)
    def f(n: int) -> int:
        return n

    assert f.validate({"n": "3"}) == {"n": 3}
    for bad in ({"n": "three"}, {}, {"n": 1, "m": 2}, ["n"]):
        with pytest.raises(ToolArgumentsInvalid):
            f.validate(bad)


def test_star_args_are_refused() -> None:
    with pytest.raises(TypeError, match=r"\*args"):
        Tool(lambda *a: a, name="star")


def test_builtins_are_registered() -> None:
    assert {"calculator", "clock", "files"} <= set(REGISTRY.names())


def test_unknown_tool_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownTool, match="calculator"):
        REGISTRY.get("calculater")


def test_a_builtin_name_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match=r"'calculator' is the name of a built-in tool "
                                         r"\(llmasos.tools.builtin.calculator\); rename .*@tool\(name=\.\.\.\)"):
        @tool
        def calculator(expression: str) -> str:
            return expression

    with pytest.raises(ValueError, match="name of a built-in tool"):
        tool(lambda: 1, name="calculator")
    assert REGISTRY.get("calculator").source == "llmasos.tools.builtin.calculator"


def test_a_builtin_name_is_refused_before_anything_loaded_the_builtins() -> None:
    code = ("from llmasos.tools.registry import tool\n"
            "try:\n"
            "    @tool\n"
            "    def clock() -> str:\n"
            "        return 'noon'\n"
            "except ValueError as exc:\n"
            "    print(exc)\n")
    root = Path(__file__).resolve().parent.parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert "'clock' is the name of a built-in tool" in out.stdout, out.stderr


def test_replace_true_replaces_a_builtin_on_purpose() -> None:
    builtin = REGISTRY.get("calculator")

    @tool(name="calculator", register=False)
    def mine(expression: str) -> str:
        return expression

    try:
        assert REGISTRY.register(mine, replace=True) is REGISTRY.get("calculator") is mine
    finally:
        REGISTRY.register(builtin, replace=True)


def test_the_same_function_registered_twice_is_no_clash(tmp_path: Path) -> None:
    source = tmp_path / "twice.py"
    source.write_text("from llmasos.tools import tool\n\n@tool\ndef twice_probe() -> int:\n    return 2\n")
    try:
        first = _import_as("twice_a", source).twice_probe
        REGISTRY.register(first)
        second = _import_as("twice_b", source).twice_probe  # the same file under another module name
        assert REGISTRY.get("twice_probe") is second and first.fn is not second.fn
    finally:
        REGISTRY.unregister("twice_probe")
        sys.modules.pop("twice_a", None)
        sys.modules.pop("twice_b", None)


def test_another_function_under_a_users_taken_name_is_refused() -> None:
    @tool
    def taken_probe() -> int:
        return 1

    try:
        with pytest.raises(ValueError, match=r"'taken_probe' is already registered \(.*taken_probe in "
                                             r".*test_registry.py\).*@tool\(name=\.\.\.\)"):
            tool(lambda: 2, name="taken_probe")
    finally:
        REGISTRY.unregister("taken_probe")


def test_an_entry_point_tool_with_a_builtin_name_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmasos.tools import registry as regmod

    class EP:
        name, value = "shadow", "somepkg:calculator"

        def load(self) -> object:
            return Tool(lambda expression: expression, name="calculator")

    builtin = REGISTRY.get("calculator")
    monkeypatch.setattr(regmod, "entry_points", lambda group: [EP()])
    monkeypatch.setattr(REGISTRY, "_loaded", False)
    monkeypatch.setattr(REGISTRY, "load_errors", {})
    assert REGISTRY.get("calculator") is builtin
    assert "name of a built-in tool" in REGISTRY.load_errors["shadow"]


def _import_as(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_entry_point_tools_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmasos.tools import registry as regmod

    ep_tool = Tool(lambda: "pong", name="ep_ping")

    class EP:
        name, value = "ping", "somepkg:ping"

        def load(self) -> object:
            return [ep_tool]

    class Broken(EP):
        name = "broken"

        def load(self) -> object:
            raise ImportError("no such module")

    monkeypatch.setattr(regmod, "entry_points", lambda group: [EP(), Broken()])
    reg = regmod.ToolRegistry()
    assert reg.get("ep_ping") is ep_tool
    assert "broken" in reg.load_errors


@pytest.mark.parametrize(("examples", "error", "match"), [
    ("12 * 7", TypeError, "list of dicts"),
    ({"question": "q"}, TypeError, "list of dicts"),
    ([42], TypeError, "must be a dict"),
    ([{"question": "q", "arguments": {"x": 1}, "shell": "rm -rf /"}], TypeError, "must be a dict"),
    ([{"question": "", "arguments": {"x": 1}}], TypeError, "non-empty"),
    ([{"question": "q", "arguments": {"x": "not a number"}}], ValueError, "its own schema refuses"),
    ([{"question": "q", "arguments": {"x": 1, "y": 2}}], ValueError, "its own schema refuses"),
    ([{"question": "q", "arguments": {"x": 1}, "answer": 7}], TypeError, "answer"),
    ([{"question": "q", "arguments": {"x": 1}, "result": object()}], TypeError, "plain JSON"),
    ([{"question": "q" * 5000, "arguments": {"x": 1}}], ValueError, "over 1000 characters"),
    ([{"question": "q", "arguments": {"x": 1}}] * 9, ValueError, "at most 8"),
])
def test_bad_examples_fail_at_decoration(examples, error, match) -> None:
    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(error, match=match):
        tool(double, register=False, examples=examples)


def test_examples_are_kept_on_the_tool() -> None:
    def double(x: int) -> int:
        return 2 * x

    t = tool(double, register=False, examples=[{"question": "twice 4?", "arguments": {"x": 4}, "result": 8}])
    assert t.examples == ({"question": "twice 4?", "arguments": {"x": 4}, "result": 8},)
