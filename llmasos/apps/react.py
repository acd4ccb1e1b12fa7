"""react: answer a question by reasoning with tools (generate -> tool call -> result -> answer).

Rule: the app is the agent loop (tools/agent.py) and nothing else; it asks for the calculator and
the clock, and uses whichever tools its process actually holds.

Which model: ``model=`` when the caller names one (an explicit choice always wins, and a model the
kernel cannot serve is then an error); else the tool-calling adapter ``smollm2-135m-tools`` when the
kernel's ``models`` syscall lists it as loaded or loadable (built with `llmasos models build
smollm2-135m-tools`: the kernel loads it on first use) and it loads; else the process's default model.
It says on stderr (its log) which model it runs on and, on a fallback, why; ``ps`` shows a generate
that names its model as waiting on ``llm:NAME``. The adapter was trained on react's prompt without the
tools' few-shot turns, so on it react leaves them out. ``constrained=False``
turns the tool-call grammar off (to measure what it buys: `llmasos eval --agent FILE --free`).
Its log has one line per step: ``[tool(arguments) -> result]`` or ``[invalid call: why]``, and
``[no call: ...]`` when the first step, which must call a tool, answered instead (possible only with
``constrained=False``; the eval counts it as an invalid call).

Each calculator call is checked against the question before it runs (``fits_question``, the agent
loop's ``check_call``): one that leaves out a number the question states, or uses one it does not, or
a unit's factor it needs, or whose value cannot be what is asked (a negative amount, a part or what is
left larger than the whole, a share of a whole larger than it), or that uses a number more often than
stated, times itself, or 100 as a percentage's factor, is first mended under a narrower
grammar where the check knows how (``repair_call``: "How much change?" starts from the largest number
and a minus), else replaced by the call most of up to ``retries`` sampled ones agree on, among those
that pass; the log says so (``[check: ...]``). ``check=False`` turns it off (`llmasos eval --agent FILE
--no-check`).

The answer quotes the calculator's result by construction (``quote_result``): a small model that
computed 25833 may still write "2583" in its sentence, so when the answer that follows a calculator
call does not quote the result, react puts the result in (in place of the last number that is not
one of the call's operands, else at the end) and says so in its log. Only the number is repaired;
an answer without a preceding successful calculator call is left as the model wrote it.
"""

from __future__ import annotations

import ast
import copy
import math
import re
from typing import Any

from llmasos.apps.app import App
from llmasos.syscalls.errors import NoSuchModel
from llmasos.syscalls.sys import Sys
from llmasos.syscalls.types import ToolCall
from llmasos.tools.agent import AgentResult
from llmasos.tools.builtin.calculator import ARITHMETIC, EXAMPLES, CalcError, evaluate
from llmasos.tools.calling import resolve

TOOLS_MODEL = "smollm2-135m-tools"  # what `llmasos models build` makes for this app
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")

app = App("react", "Answer a question with the help of tools (calculator, clock)",
          tools=["calculator", "clock"])


async def adapter_problem(sys: Sys, name: str = TOOLS_MODEL) -> str | None:
    """Why the tool-calling adapter cannot serve this process, from the kernel's ``models`` syscall (not
    built, broken and why, not allowed to it); None when the kernel has it loaded or can load it."""
    info = {m.name: m for m in await sys.models()}.get(name)
    if info is None:
        return (f"the kernel does not offer {name} (not built: `llmasos models build {name}`; or loading on first "
                "use is off, KernelConfig.lazy_models=0; or this process may not use it)")
    if info.state == "broken":
        return f"{name} is broken: {info.reason}"
    return None


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _shown(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def quote_result(result: AgentResult) -> tuple[str, str | None]:
    """(the answer, a log note or None): the answer with the last calculator result quoted in it.
    Unchanged when the answer already quotes it, or when no successful calculator call came just
    before the answer; else the last number of the answer that is not an operand of the call is
    replaced by the result (or, with none, the result is added at the end)."""
    answer, value = result.answer, _calculated(result)
    if value is None:
        return answer, None
    call = result.steps[-2]
    found = list(_NUMBER.finditer(answer))
    if any((n := _number(m.group())) is not None and math.isclose(n, value, rel_tol=1e-9, abs_tol=1e-9)
           for m in found):
        return answer, None
    operands = {_number(m.group()) for m in _NUMBER.finditer(str((call.arguments or {}).get("expression", "")))}
    wrong = [m for m in found if _number(m.group()) not in operands]
    if wrong:
        m = wrong[-1]
        fixed = answer[:m.start()] + _shown(value) + answer[m.end():]
        return fixed, f"[answer: quoted {m.group()}; the calculator's result {_shown(value)} put in its place]"
    return f"{answer.rstrip()} ({_shown(value)})", f"[answer: the calculator's result {_shown(value)} added]"


def _calculated(result: AgentResult) -> float | None:
    """The result of the successful calculator call the answer came just after, or None."""
    steps = result.steps
    if not result.finished or len(steps) < 2 or steps[-1].kind != "answer":
        return None
    call = steps[-2]
    value = call.result
    if call.kind != "call" or call.name != "calculator" or call.error is not None \
            or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


_WORD = re.compile(r"[a-z]+")
# What the calculator's few-shot examples name (Tom, his dollars, the eggs and their boxes): the default
# model, shown them, copies them into answers to other questions. "Tom has 558 dollars left." was its
# answer to "What is 467+91?" in 69 of 100 stated expressions.
_EXAMPLE_WORDS = frozenset(w for ex in EXAMPLES for w in _WORD.findall(f"{ex['question']} {ex['answer']}".lower())) \
    - {"a", "an", "the", "how", "many", "much", "are", "is", "in", "and", "has", "had", "hold", "holds", "left",
       "spent"}


def unborrowed(question: str, answer: str, result: AgentResult) -> tuple[str, str | None]:
    """(the answer, a log note or None): an answer after a calculator result that names what only the
    few-shot examples name, not the question, says the result plainly instead ("The answer is 558.").
    Unchanged otherwise, and when no calculator result came just before the answer."""
    value = _calculated(result)
    if value is None:
        return answer, None
    asked = set(_WORD.findall(question.lower()))
    borrowed = sorted({w for w in _WORD.findall(answer.lower()) if w in _EXAMPLE_WORDS and w not in asked})
    if not borrowed:
        return answer, None
    return (f"The answer is {_shown(value)}.",
            f"[answer: {answer!r} names {', '.join(borrowed)}, from the examples, not the question; said plainly]")


# numbers a question may need without stating them: when its words call for them (a unit's size, "half")
_CONSTANT_WORDS: tuple[tuple[str, tuple[float, ...]], ...] = (
    (r"%|percent", (100.0,)),
    (r"\bweeks?\b", (7.0,)),
    (r"\bdays?\b.*\bhours?\b|\bhours?\b.*\bdays?\b", (24.0,)),
    (r"\bhours?\b.*\bminutes?\b|\bminutes?\b.*\bhours?\b|\bminutes?\b.*\bseconds?\b|"
     r"\bseconds?\b.*\bminutes?\b", (60.0,)),
    (r"\bdozens?\b|\bmonths?\b.*\byears?\b|\byears?\b.*\bmonths?\b|\bfeet\b.*\binch|\binch.*\bfeet\b",
     (12.0,)),
    (r"\byears?\b.*\bdays?\b|\bdays?\b.*\byears?\b", (365.0,)),
    (r"\byears?\b.*\bweeks?\b|\bweeks?\b.*\byears?\b", (52.0,)),
    (r"\b(?:kilo|km\b|kg\b)|\bml\b|millilit|\bgrams?\b|\bmetres?\b.*\bcm\b", (1000.0, 100.0)),
    (r"\bhalf\b|\btwice\b|\bdouble\b|\bboth\b|\bpairs?\b|\bcouple\b", (2.0, 0.5)),
    (r"\btriple\b|\bthird\b", (3.0,)),
    (r"\bquarter\b", (4.0, 0.25)),
)
_CONSTANTS = tuple((re.compile(words, re.IGNORECASE), values) for words, values in _CONSTANT_WORDS)

# (a large unit, a small one, how many small in one large): a question that states an amount in the large
# unit ("19 weeks", "7 days") and asks in the small one ("How many days ...?") needs the factor, unless
# the large unit is only a rate ("8 hours a day"), where the factor is not wanted
_CONVERSION_WORDS: tuple[tuple[str, str, float], ...] = (
    ("weeks?", "days?", 7.0),
    ("days?", "hours?", 24.0),
    ("hours?", "minutes?", 60.0),
    ("minutes?", "seconds?", 60.0),
    ("years?", "months?", 12.0),
    ("feet|foot", "inch(?:es)?", 12.0),
    ("kilograms?|kg", "grams?", 1000.0),
    ("metres?|meters?|m", "centimet(?:re|er)s?|cm", 100.0),
)
_CONVERSIONS = tuple(
    (re.compile(rf"\d\s*(?:{large})\b", re.IGNORECASE),
     re.compile(rf"\b(?:a|an|per|each|every|one)\s+(?:{large})\b", re.IGNORECASE),
     re.compile(rf"\b(?:{small})\b", re.IGNORECASE), factor)
    for large, small, factor in _CONVERSION_WORDS)
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def _asked(question: str) -> str | None:
    """The question's last sentence when it is a question (what is asked), else None."""
    last = _SENTENCE_END.split(question.strip())[-1]
    return last if last.endswith("?") else None


def _numbers(text: str) -> list[float]:
    return [n for m in _NUMBER.finditer(text) if (n := _number(m.group())) is not None]


def _parsed(expression: str) -> ast.expr | None:
    """expression's syntax tree (``^`` read as a power, as the calculator does), None when it has none."""
    try:
        return ast.parse(expression.replace("^", "**").strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _last_operation(expression: str) -> type[ast.operator] | None:
    """The operator applied last in expression (ast.Add for ``19 * 7 + 3``), None when there is none."""
    body = _parsed(expression)
    return type(body.op) if isinstance(body, ast.BinOp) else None


def _needed_factors(question: str) -> list[float]:
    """The unit factors question needs (_CONVERSION_WORDS): it states an amount in a unit and asks, in
    its last sentence, in a smaller one."""
    asked = _asked(question)
    if asked is None:
        return []
    return [factor for amount, rate, small, factor in _CONVERSIONS
            if amount.search(question) and not rate.search(question) and small.search(asked)]


def _close(x: float, values: set[float]) -> bool:
    return any(math.isclose(x, v, rel_tol=1e-9, abs_tol=1e-9) for v in values)


def fits_question(question: str, call: object) -> str | None:
    """Why a calculator call does not fit a word problem, or None: every number the question states is
    used, and every number used is stated (or a share of a stated percentage, or a constant the
    question's words call for, ``_CONSTANTS``; 0 and 1 always); an amount stated in one unit and asked
    in a smaller one uses the factor between them (``_CONVERSION_WORDS``: "7 days ... How many hours?"
    needs the 24); its value can be what is asked (``_implausible``: a part no larger than the whole, a
    total no smaller than its largest part, what is left taking away last, a rate multiplied by the
    periods it runs for); and no number is used more often
    than stated but the whole, times itself, or, with a percentage, 100 as a factor (``_misused``:
    ``87 + 15 * 15 / 100``, ``11 * 3 * 11``, ``2003 * 3 * 100 / 100``). The check for
    ``sys.agent(check_call=)``: a small model maps "19 weeks and 3 days" to ``19 * 7`` or ``19 * 3``, or
    multiplies by 60 with no hours in sight, and another sample may do better (docs/tools.md has what
    it buys). Other tools' calls, and questions that state no number, pass."""
    return _misfit(question, call)[0]


def repair_call(question: str, call: object) -> dict[str, Any] | None:
    """The calculator's schema narrowed to mend a call that fails ``fits_question``, or None (the repair
    for ``sys.agent(repair_call=)``): the model's reply under it is taken if it then passes. Three
    repairs, each keeping what the model wrote or what the question fixes, and leaving it the rest:
    the one number it left out is joined on (``19 * 7`` -> ``19 * 7 ? 3``, the operator its choice among
    those that make a call that fits: ``40 - 12 * 9`` is not one for what is left); the
    unit factor it left out comes first (``12 * 12 ...`` for "12 years and 8 months"); a part or what is
    left that came out too large, or negative, starts from the whole: ``59 - ...`` (``111 / ...`` for
    "each"), the whole being the largest number, or the one sum of money a question about money states
    ("15 chocolates cost 7.35 dollars, each?": ``7.35 / ...``); what is left with the whole left out is
    the whole minus the model's own expression (``15 - 3 * 4.75``)."""
    pattern = _misfit(question, call)[1]
    if pattern is None:
        return None
    schema = copy.deepcopy(resolve(["calculator"])[0].schema)
    schema["function"]["parameters"]["properties"]["expression"]["pattern"] = pattern
    return schema


_BODY = ARITHMETIC[1:-1]  # the calculator's expression pattern, unanchored
_JOIN = r" ?[-+*/] ?"


def _misfit(question: str, call: object) -> tuple[str | None, str | None]:
    """(why call does not fit question, a pattern for the expression that would mend it) or (None, None)."""
    expression = (getattr(call, "arguments", None) or {}).get("expression")
    if getattr(call, "name", None) != "calculator" or not isinstance(expression, str):
        return None, None
    stated = set(_numbers(question))
    if not stated:
        return None, None
    numbers = _numbers(expression)
    used = set(numbers)
    percent = "%" in question or "percent" in question.lower()
    forms = {n: {n, n / 100, 1 - n / 100, 1 + n / 100} if percent else {n} for n in stated}
    unused = [n for n in stated if not any(_close(f, used) for f in forms[n]) and not _only_describes(question, n)]
    factors = _needed_factors(question)
    constants = set(factors) | {v for pattern, values in _CONSTANTS if pattern.search(question) for v in values}
    allowed = {f for fs in forms.values() for f in fs} | {0.0, 1.0} | constants
    invented = [n for n in used if not _close(n, allowed)]
    missing = [f for f in factors if not _close(f, used)]
    mixed = _mixed_amount(question)  # "19 weeks and 3 days": (19, 7, 3), when that is all it states
    mixed = mixed if mixed is not None and stated == {mixed[0], mixed[2]} else None
    if unused:
        why = f"leaves out the question's {', '.join(_shown(n) for n in sorted(unused))}"
        if mixed is not None and not invented:
            return why, _converted(mixed)
        asked = _asked(question)
        part = asked is not None and not _STATED_OPERATION.search(question) and _PART_ASKED.search(asked)
        start = _whole(question, stated)
        whole = part and start in unused
        alone = len(numbers) == len(used) and not invented and not missing and len(unused) == 1
        if whole and alone and not _EACH_ASKED.search(asked or ""):
            return why, _taken_from(start, expression)
        if alone and not whole:
            return why, _joined(question, expression, unused[0])
        return why, _from_whole(asked, start) if whole else None
    if missing:
        why = f"leaves out the {', '.join(_shown(f) for f in missing)} its units call for"
        if mixed is not None:
            return why, _converted(mixed)
        amount = next((m for m in _NUMBER.finditer(question) if _unit_after(question, m.end(), missing[0])), None)
        if amount is None:
            return why, None
        times = f"{re.escape(_shown(_number(amount.group()) or 0))} ?\\* ?{re.escape(_shown(missing[0]))}"
        return why, f"^{times}({_JOIN}{_BODY})?$"
    if invented:
        return f"uses {', '.join(_shown(n) for n in sorted(invented))}, which the question does not state", None
    for p in (_number(m.group(1)) for m in _PERCENTAGE.finditer(question)):
        if p is not None and p not in (0, 100) and not _close(100.0, used) \
                and not any(_close(f, used) for f in (p / 100, 1 - p / 100, 1 + p / 100)):
            return f"uses the {_shown(p)}% as it stands, not divided by 100", _share_of_largest(question, stated)
    if mixed is not None and not _sums(expression):
        return "does not add the two parts of the amount it converts", _converted(mixed)
    implausible = _implausible(question, expression, stated)
    if implausible[0] is not None:
        return implausible
    return _misused(question, expression, stated, percent, constants), None


def _only_describes(question: str, n: float) -> bool:
    """True when n only says what a unit holds and the question asks about the units, not what they hold
    ("A pack of 3 batteries costs 4.75 dollars. How much do 11 packs cost?": the 3)."""
    asked = _asked(question)
    if asked is None:
        return False
    for m in _HOLDS.finditer(question):
        if _number(m.group(2)) == n:
            unit, held = m.group(1).lower(), m.group(3).lower()
            return _mentions(asked, unit) and not _mentions(asked, held)
    return False


def _mentions(text: str, noun: str) -> bool:
    return re.search(rf"\b{re.escape(_singular(noun))}(?:s|es)?\b", text, re.IGNORECASE) is not None


def _singular(noun: str) -> str:
    return noun[:-2] if noun.endswith(("ches", "shes", "xes")) else noun[:-1] if noun.endswith("s") else noun


def _joined(question: str, expression: str, number: float) -> str | None:
    """A pattern for expression with number joined on by an operator that makes a call that fits the
    question (the model's choice among those), or None when none does."""
    start, tail = expression.strip(), _shown(number)
    ops = [op for op in "+-*/"
           if _misfit(question, ToolCall("", "calculator", {"expression": f"{start} {op} {tail}"}))[0] is None]
    if not ops:
        return None
    return f"^{re.escape(start)} ?[{''.join(re.escape(op) for op in ops)}] ?{re.escape(tail)}$"


def _products(node: ast.AST) -> list[list[ast.AST]]:
    """The factors of each product in an expression tree (``a * b * c`` is one product of three); a
    loop, not recursion, so a chain of thousands of terms is no deeper a walk than one of three."""
    found: list[list[ast.AST]] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if not (isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult)):
            stack.extend(ast.iter_child_nodes(n))
            continue
        factors, parts = [], [n]
        while parts:
            m = parts.pop()
            if isinstance(m, ast.BinOp) and isinstance(m.op, ast.Mult):
                parts += [m.right, m.left]
            else:
                factors.append(m)
                stack.append(m)
        found.append(factors)
    return found


def _constant(node: ast.AST) -> float | None:
    value = getattr(node, "value", None) if isinstance(node, ast.Constant) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _misused(question: str, expression: str, stated: set[float], percent: bool,
             constants: set[float]) -> str | None:
    """Why expression uses a stated number in a way no word problem of this kind does, or None: a number
    used more often than the question states it, but for the largest (the amount a discount, a growth or
    "3 times as many" takes twice: ``115 - 115 * 35 / 100``); a number times itself (no question here
    asks for a square); with a percentage, 100 as a factor where it can only divide. A number the
    question's units call for (constants: the 7 of "7 weeks" in days, ``7 * 7``) may be used once more."""
    tree = _parsed(expression)
    if tree is None:
        return None
    numbers, said = _numbers(expression), _numbers(question)

    def may_use(n: float) -> int:
        return sum(1 for x in said if _close(x, {n})) + (1 if _close(n, constants) else 0)

    for n in sorted(stated):
        uses = sum(1 for x in numbers if _close(x, {n}))
        if n != max(stated) and uses > may_use(n):
            return f"uses the question's {_shown(n)} {uses} times; it states it {may_use(n)}"
    products = _products(tree)
    if not _SQUARE_WORDS.search(question):
        for product in products:
            values = [v for f in product if (v := _constant(f)) is not None and _close(v, stated)]
            twice = next((v for v in values if sum(1 for w in values if _close(w, {v})) > may_use(v)), None)
            if twice is not None:
                return f"multiplies the question's {_shown(twice)} by itself"
    if percent and not _close(100.0, stated) and any(
            _close(v, {100.0}) for product in products for f in product if (v := _constant(f)) is not None):
        return "multiplies by 100 where a percentage is divided by it"
    return None


def _mixed_amount(question: str) -> tuple[float, float, float] | None:
    """(n, factor, m) for a question that asks in the smaller unit about "n LARGE and m SMALL" ("19 weeks
    and 3 days ... How many days?"), else None."""
    asked = _asked(question)
    for (large, small, factor), (_amount, _rate, small_word, _f) in zip(_CONVERSION_WORDS, _CONVERSIONS,
                                                                           strict=True):
        m = re.search(rf"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:{large})\s*(?:and\s+)?(\d+(?:\.\d+)?)\s*(?:{small})\b",
                      question, re.IGNORECASE)
        if m and asked is not None and small_word.search(asked):
            return float(m.group(1)), factor, float(m.group(2))
    return None


def _converted(mixed: tuple[float, float, float]) -> str:
    """The expression of a mixed amount in its smaller unit: n * factor + m, as a pattern."""
    n, factor, m = (re.escape(_shown(x)) for x in mixed)
    return f"^{n} ?\\* ?{factor} ?\\+ ?{m}$"


def _sums(expression: str) -> bool:
    return _last_operation(expression) is ast.Add


def _from_whole(asked: str, whole: float) -> str:
    """For a part, what is left or what each gets: the expression starts from the whole (``_whole``),
    then - (or / when asked about each)."""
    return f"^{re.escape(_shown(whole))} ?{'/' if _EACH_ASKED.search(asked) else '-'} ?{_BODY}$"


def _whole(question: str, stated: set[float]) -> float:
    """The amount a part is taken from: the largest number stated, but when a question about money
    states one sum of money, that sum ("A box of 15 chocolates costs 7.35 dollars. How much does each
    cost?" shares the 7.35)."""
    asked = _asked(question) or ""
    if _MONEY_ASKED.search(asked):
        sums = {n for m in _MONEY.finditer(question) if (n := _number(m.group(1) or m.group(2))) is not None}
        if len(sums) == 1 and sums <= stated:
            return sums.pop()
    return max(stated)


def _taken_from(whole: float, expression: str) -> str:
    """What is left when the model worked out what is taken ("3 * 4.75" for the sandwiches, the 15
    dollar note left out): the whole minus its expression, the only expression the pattern admits."""
    taken = expression.strip()
    if _last_operation(taken) in (ast.Add, ast.Sub):
        taken = f"({taken})"
    return f"^{re.escape(_shown(whole))} ?- ?{re.escape(taken)}$"


def _share_of_largest(question: str, stated: set[float]) -> str | None:
    """For a share asked of an amount ("60% of a 940 dollar gift", "a 35% tip ... the tip"): the
    expression starts from the largest number stated, times, and is that share of it when the question
    states one percentage (``940 * 60 / 100``); None for other questions."""
    asked = _asked(question) or ""
    named = _share_named(question, asked)
    share_of = _SHARE_OF.search(question) is not None and not _GROWS.search(question)
    if not (named or share_of):
        return None
    largest = re.escape(_shown(max(stated)))
    shares = {p for m in _PERCENTAGE.finditer(question) if (p := _number(m.group(1))) is not None}
    if len(shares) == 1:  # the share itself: nothing is left to choose
        (p,) = shares
        return f"^{largest} ?\\* ?({re.escape(_shown(p))} ?/ ?100|{re.escape(_shown(p / 100))})$"
    return f"^{largest} ?\\* ?{_BODY}$"


def _share_named(question: str, asked: str) -> bool:
    """True when what is asked is a share the question names ("a 35% tip ... How much is the tip?")."""
    return any(_names(asked, w) for m in _SHARE_NAMED.finditer(question) for w in m.groups()[1:] if w)


def _names(asked: str, word: str) -> bool:
    """True when what is asked is the thing word names: "How much is the tip?", "How much tax is added?";
    "35% off" names what is saved ("How many dollars do you save?")."""
    if word.lower() == "off" and _SAVED.search(asked):
        return True
    return re.search(rf"\b(?:the|much|many) {re.escape(word)}\b", asked, re.IGNORECASE) is not None


def _unit_after(question: str, end: int, factor: float) -> bool:
    """True when the number ending at end is an amount in the larger unit of factor's conversion."""
    return any(amount.match(question, max(0, end - 1)) and _close(f, {factor})
               for amount, _rate, _small, f in _CONVERSIONS)


# what a word problem's last sentence asks for, and what that says of the result: a part or what is
# left of an amount is no larger than the largest number stated ("How much change?", "How much taller is
# the tree?", "How many children are on each team?"), and no count or amount asked for is negative;
# a question that states an operation ("How much is 5 - 40?") is left to the calculator
_NEGATIVE_WORDS = re.compile(r"\b(?:degrees?|temperature|below|minus|negative|owes?|debt|loss|lost)\b", re.IGNORECASE)
_QUANTITY_ASKED = re.compile(r"\bhow (?:many|much|long|far|old|tall|heavy|wide|big)\b|\bwhat (?:is|was|are) the\b",
                             re.IGNORECASE)
_PART_ASKED = re.compile(
    r"\b(?:left|remains?|remaining|change|back|still|missing|difference)\b"
    r"|\bhow (?:many|much) (?:more|fewer|less)\b"
    r"|\bhow much (?:taller|shorter|heavier|lighter|longer|older|younger|farther|further|deeper|higher|lower)\b"
    r"|\b(?:on|in|to|for|of|does|do|did|is|are|gets?)\s+each\s+(?!(?:other|day|week|month|year|hour|minute)\b)[a-z]",
    re.IGNORECASE)
_MONEY_ASKED = re.compile(r"\b(?:cost|costs|pay|pays|paid|price|spend|spent|earn|earns|dollars?|euros?)\b|\$",
                          re.IGNORECASE)
_MONEY = re.compile(r"\$\s*(\d[\d,]*(?:\.\d+)?)|(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*(?:dollars?|euros?|pounds?)\b",
                    re.IGNORECASE)
_TOTAL_ASKED = re.compile(r"\b(?:altogether|in all|in total|total|combined|together|"
                          r"over the \w+ (?:days|weeks|months|years|nights|games|trips))\b", re.IGNORECASE)
_HOLDS = re.compile(r"\b(?:a|an|each|one|every)\s+(packs?|packets?|box(?:es)?|bags?|crates?|cases?|cartons?|trays?|"
                    r"sets?|bundles?|jars?|baskets?|tins?|cans?|tubes?|sacks?|rolls?|books?|kits?|batch(?:es)?|"
                    r"pallets?|buckets?|barrels?)\s+(?:of|holds|contains|with)\s+(\d+)\s+([a-z]+)",
                    re.IGNORECASE)  # "a pack of 3 batteries": (unit, how many, what it holds)
_LEFT_ASKED = re.compile(r"\b(?:left|remains?|remaining)\b", re.IGNORECASE)
_SAVED = re.compile(r"\b(?:save[sd]?|saving|savings)\b", re.IGNORECASE)
_EACH_ASKED = re.compile(r"\beach\b|\bper\b|\bequal", re.IGNORECASE)
_STATED_OPERATION = re.compile(r"\d\s*[-+*/x×÷^]\s*\d")
_COUNT_ASKED = re.compile(r"\bhow many ([a-z]+)\b", re.IGNORECASE)
_GOES = {"trips", "times", "loads", "rounds", "journeys", "runs", "batches", "turns", "goes", "visits"}
_AT_A_TIME = re.compile(r"\bat (?:a time|once)\b", re.IGNORECASE)
_PERIODS_IN = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s+(minutes|hours|days|nights|weeks|months|years|shifts|"
                         r"sessions|lessons|seasons|terms)\b", re.IGNORECASE)
_SQUARE_WORDS = re.compile(r"\b(?:squares?d?|area|cubes?d?|power)\b", re.IGNORECASE)
# "60% of a 940 dollar gift" is at most 940, unless the question speaks of growth
_SHARE_OF = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*(?:%|percent\b|per cent\b)\s+of\b", re.IGNORECASE)
_GROWS = re.compile(r"\b(?:more|increase[sd]?|up|grows?|grew|rises?|rose|add(?:s|ed)?|plus|extra|interest|tip|tax)\b",
                    re.IGNORECASE)
_PERCENTAGE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*(?:%|percent\b|per cent\b)", re.IGNORECASE)
# "leaves a 35% tip ... How much is the tip?": what is asked is that share of an amount
_SHARE_NAMED = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*%\s+([a-z]+)(?:\s+([a-z]+))?", re.IGNORECASE)


def _periods_asked(question: str, asked: str) -> bool:
    """True when asked is how many of the periods or units a rate is per ("15 pages every evening ...
    How many evenings?", "15 litres a minute ... How many minutes ...?"): the count of times the rate
    fits an amount, which is no larger than the amount."""
    found = _COUNT_ASKED.search(asked)
    if found is None:
        return False
    noun = found.group(1).lower()
    singular = noun[:-2] if noun.endswith(("ches", "shes")) else noun[:-1] if noun.endswith("s") else noun
    before = question[:len(question) - len(asked)]
    if noun in _GOES and _AT_A_TIME.search(before):  # "carries 7 people at a time ... how many trips"
        return True
    return re.search(rf"\b(?:each|every|per|a|an)\s+(?:{re.escape(singular)}|{re.escape(noun)})\b", before,
                     re.IGNORECASE) is not None


def _periods_over(question: str, asked: str) -> set[float]:
    """The numbers of periods the question asks about that a stated rate is per ("paid 23 dollars an hour
    and works 35 hours a week. How much does she earn in 3 weeks?": {3}): the rate runs for them, so they
    multiply it."""
    before = question[:len(question) - len(asked)]
    out = set()
    for m in _PERIODS_IN.finditer(asked):
        n = _number(m.group(1))
        rate = re.compile(rf"\b(?:each|every|per|a|an)\s+{re.escape(_singular(m.group(2).lower()))}\b",
                          re.IGNORECASE)
        if n is not None and rate.search(before):
            out.add(n)
    return out


def _divisor(expression: str, numbers: set[float]) -> float | None:
    """One of numbers that expression divides by, or None."""
    tree = _parsed(expression)
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = _constant(node.right)
            if right is not None and _close(right, numbers):
                return right
    return None


def _times_instead(expression: str, divisor: float) -> str | None:
    """For ``X / n`` with n the divisor: a pattern for ``X * n``; else None."""
    tree = _parsed(expression)
    if "^" in expression or not (isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Div)):
        return None
    left = ast.get_source_segment(expression.strip(), tree.left)
    right = _constant(tree.right)
    if left is None or right is None or not _close(right, {divisor}):
        return None
    return f"^{re.escape(left.strip())} ?\\* ?{re.escape(_shown(divisor))}$"


def _takes_away(expression: str, stated: set[float]) -> bool:
    """True when the last operation of expression is a subtraction or a division and it uses no stated
    number twice ("19 * 15 - 75", not "26 * 100 - 26"): what is left of an amount the expression makes
    first may be larger than any number stated."""
    numbers = _numbers(expression)
    twice = any(sum(1 for n in numbers if _close(n, {s})) > 1 for s in stated)
    return _last_operation(expression) in (ast.Sub, ast.Div, ast.FloorDiv) and not twice


def _implausible(question: str, expression: str, stated: set[float]) -> tuple[str | None, str | None]:
    """(why the value of expression cannot answer question, see above, and the repair's pattern) or
    (None, None)."""
    asked = _asked(question)
    if asked is None or _STATED_OPERATION.search(question):
        return None, None
    try:
        value = evaluate(expression)
    except CalcError:
        return None, None  # the calculator says why, as the call's error
    largest = max(stated)
    # a share the question names ("the tip", "do you save") is mended as that share, whatever went wrong
    start = (_share_of_largest(question, stated) if _share_named(question, asked)
             else _from_whole(asked, _whole(question, stated)))
    if value < 0 and _QUANTITY_ASKED.search(asked) and not _NEGATIVE_WORDS.search(question):
        return f"gives {_shown(value)}, and the question asks for an amount that cannot be negative", start
    if value > largest and _PART_ASKED.search(asked) and not _takes_away(expression, stated):
        return (f"gives {_shown(value)}, more than the question's largest number ({_shown(largest)}), "
                "for a part or what is left"), start
    if _LEFT_ASKED.search(asked) and not _EACH_ASKED.search(asked) \
            and _last_operation(expression) in (ast.Mult, ast.Div):
        return "ends in a product or a quotient, for what is left (what is taken away comes last)", None
    if value < largest and _TOTAL_ASKED.search(asked) and not _PART_ASKED.search(asked) \
            and not _EACH_ASKED.search(asked) and not _PERCENTAGE.search(question):
        return (f"gives {_shown(value)}, less than the question's largest number ({_shown(largest)}), for a "
                "total", f"^{re.escape(_shown(largest))} ?[+*] ?{_BODY}$")
    if _periods_asked(question, asked) and _last_operation(expression) is not ast.Div:
        return ("does not divide, for how many times a rate fits an amount",
                f"^{re.escape(_shown(largest))} ?/ ?{_BODY}$")
    over = _periods_over(question, asked)
    divisor = _divisor(expression, over) if over else None
    if divisor is not None:
        return (f"divides by the {_shown(divisor)} periods the rate runs for, which multiply it",
                _times_instead(expression, divisor))
    if value > largest and not _GROWS.search(question) and any(
            (p := _number(m.group(1))) is not None and p <= 100 for m in _SHARE_OF.finditer(question)):
        return (f"gives {_shown(value)}, more than the question's largest number, for a share of it",
                _share_of_largest(question, stated))
    for m in _SHARE_NAMED.finditer(question):
        share, named = _number(m.group(1)), {w.lower() for w in m.groups()[1:] if w}
        if share is not None and any(_names(asked, w) for w in named) \
                and value > largest * share / 100 * (1 + 1e-9):
            label = "saving" if m.group(2).lower() == "off" else m.group(2).lower()
            return (f"gives {_shown(value)}, more than {_shown(share)}% of the question's largest number, "
                    f"for the {label}"), _share_of_largest(question, stated)
    return None, None


@app.main
async def main(sys: Sys, question: str, max_steps: int = 4, max_tokens: int = 96, model: str | None = None,
               constrained: bool = True, check: bool = True, retries: int = 6) -> str:
    options = {"max_steps": max_steps, "max_tokens": max_tokens, "first_choice": "required",
               "constrained": constrained, "check_call": fits_question if check else None, "retries": retries,
               "repair_call": repair_call if check else None}
    # The first step must call a tool: under "auto" the default model answers from memory (and
    # wrongly) every time; measured in bench/toolcalls.py.
    examples = True  # (the few-shot turns: for every model but the adapter, trained without them)
    if model is not None:
        await sys.write(f"[model: {model} (chosen by the caller)]\n", "stderr")
        examples = model != TOOLS_MODEL
        result = await sys.agent(question, model=model, examples=examples, **options)
    else:
        why = await adapter_problem(sys)
        result = None
        if why is None:
            await sys.write(f"[model: {TOOLS_MODEL} (the tool-calling adapter)]\n", "stderr")
            try:
                result = await sys.agent(question, model=TOOLS_MODEL, examples=False, **options)
                examples = False
            except NoSuchModel as exc:  # its load failed (ModelUnavailable), or no room for it now
                why = str(exc)
        if result is None:
            await sys.write(f"[model: default (the kernel's default model); not {TOOLS_MODEL}: {why}]\n", "stderr")
            result = await sys.agent(question, **options)
    for step in result.steps:
        if step.note is not None:
            await sys.write(f"[{step.note}]\n", "stderr")
        if step.kind == "call":
            shown = step.error if step.error is not None else step.result
            await sys.write(f"[{step.name}({step.arguments}) -> {shown}]\n", "stderr")
        elif step.kind == "invalid":
            await sys.write(f"[invalid call: {step.error}]\n", "stderr")
    if result.steps and result.steps[0].kind == "answer" and max_steps > 1 and await sys.tools():
        await sys.write("[no call: the first step answered where a tool call was required]\n", "stderr")
    answer, note = quote_result(result)
    if note is not None:
        await sys.write(note + "\n", "stderr")
    if examples:
        answer, note = unborrowed(question, answer, result)
        if note is not None:
            await sys.write(note + "\n", "stderr")
    await sys.write(answer + "\n")
    return answer
