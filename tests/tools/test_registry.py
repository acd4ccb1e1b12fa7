"""@tool: schemas derived from signatures and docstrings, the registry, entry points."""

from __future__ import annotations

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


def test_a_taken_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        tool(lambda: 1, name="calculator")


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
