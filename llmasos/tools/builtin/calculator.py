"""calculator: arithmetic on numbers, evaluated by walking the parsed expression, never with eval.

Rule: only number literals, + - * / // % ** (``^`` means power, as on a calculator), unary signs and
parentheses are accepted; exponents, result sizes, nesting and expression length are bounded
(``ToolLimits``, tools/limits.py) so no input can make the kernel hang or run out of memory.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Annotated

from pydantic import Field

from llmasos.tools.limits import TOOL_LIMITS as LIMITS
from llmasos.tools.registry import tool

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}



def _arithmetic_pattern(nesting: int = 2, terms: int = 12) -> str:
    """A regex for a well-formed expression: signed numbers joined by operators, parentheses nested
    at most nesting deep, at most terms terms a level (so a constrained call cannot run away writing
    ``15 + 15 + 15 + ...`` to the end of its budget, and can close at any point)."""
    num = r"[-+]?[0-9]{1,15}(\.[0-9]{1,10})?"
    op = r" ?(\*\*|//|[-+*/%^]) ?"
    expr = rf"{num}({op}{num}){{0,{terms - 1}}}"
    for _ in range(nesting):
        atom = rf"([-+]?\({expr}\)|{num})"
        expr = rf"{atom}({op}{atom}){{0,{terms - 1}}}"
    return rf"^{expr}$"


ARITHMETIC = _arithmetic_pattern()
Expression = Annotated[str, Field(min_length=1, max_length=LIMITS.expression_chars, pattern=ARITHMETIC)]


class CalcError(ValueError):
    """The expression is not plain arithmetic, or its value is out of range."""


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression (CalcError if it is not one)."""
    if len(expression) > LIMITS.expression_chars:
        raise CalcError(f"the expression is {len(expression)} characters; the limit is {LIMITS.expression_chars}")
    try:
        tree = ast.parse(expression.replace("^", "**").strip(), mode="eval")
    except SyntaxError:
        raise CalcError(f"{expression!r} is not an arithmetic expression; write e.g. 17 * 23") from None
    return _tidy(_eval(tree.body, 0))


def _eval(node: ast.AST, depth: int) -> int | float:
    if depth > LIMITS.max_depth:
        raise CalcError("the expression is nested too deeply")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, depth + 1))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            if abs(right) > LIMITS.max_exponent:
                raise CalcError(f"exponent {right} is too large (limit {LIMITS.max_exponent})")
            if left != 0 and abs(right) * math.log10(abs(left) + 1) > math.log10(LIMITS.max_magnitude):
                raise CalcError("the result would be too large")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise CalcError("division by zero") from None
        except OverflowError:
            raise CalcError("the result is too large") from None
        if isinstance(value, complex):
            raise CalcError("the result is not a real number")
        if abs(value) > LIMITS.max_magnitude:
            raise CalcError("the result is too large")
        return value
    raise CalcError(f"{type(node).__name__} is not allowed: use numbers, + - * / // % ** and parentheses")


def _tidy(value: int | float) -> int | float:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise CalcError("the result is not a finite number")
        if value.is_integer() and abs(value) < 1e15:
            return int(value)
        return round(value, 10)
    return value


EXAMPLES = [
    {"question": "A box holds 12 eggs. How many eggs are in 7 boxes?", "arguments": {"expression": "12 * 7"},
     "result": 84, "answer": "7 boxes hold 84 eggs."},
    {"question": "Tom had 45 dollars and spent 18. How much is left?", "arguments": {"expression": "45 - 18"},
     "result": 27, "answer": "Tom has 27 dollars left."},
]


@tool(timeout=5.0, examples=EXAMPLES)
def calculator(expression: Expression) -> int | float:
    """Evaluate an arithmetic expression and return its value.

    Args:
        expression: numbers with + - * / // % ** ^ and parentheses, e.g. "17 * (3 + 4)"
    """
    return evaluate(expression)
