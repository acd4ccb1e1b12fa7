"""calculator: arithmetic without eval."""

from __future__ import annotations

import pytest

from llmasos.tools.builtin.calculator import CalcError, evaluate


@pytest.mark.parametrize(("expr", "value"), [
    ("17 * 23", 391), ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 / 2", 3.5), ("6 / 3", 2), ("7 // 2", 3),
    ("7 % 3", 1), ("2 ** 10", 1024), ("2 ^ 3", 8), ("-4 + +2", -2), ("0.1 + 0.2", 0.3),
])
def test_arithmetic(expr: str, value: float) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", [
    "__import__('os')", "open('x')", "a + 1", "[1, 2]", "1 if 1 else 2", "(lambda: 1)()", "1 < 2",
    "'a' * 3", "", "1 +",
])
def test_anything_but_arithmetic_is_refused(expr: str) -> None:
    with pytest.raises(CalcError):
        evaluate(expr)


@pytest.mark.parametrize("expr", ["1 / 0", "9 ** 99999", "10 ** 400", "(-8) ** 0.5", "-" * 80 + "1"])
def test_out_of_range_is_refused_quickly(expr: str) -> None:
    with pytest.raises(CalcError):
        evaluate(expr)
