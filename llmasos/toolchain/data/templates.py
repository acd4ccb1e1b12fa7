"""The word-problem templates: one- and two-step totals, differences, rates, sharing, percentages,
time and money, each with several wordings, its calculator expression and its answer sentence.

Rule: a template is either a training template or a held-out one (``EVAL`` below), never both, so
an evaluation set measures wordings and structures a fine-tuned model has not seen. Operands are
drawn by ``draw`` (the generator checks the number split, wordproblems.py); ``{x}`` in a text is
an operand, ``{name}``, ``{item}`` and ``{place}`` are drawn from the word lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random

NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jade", "Kofi", "Lena",
         "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Victor", "Wen", "Yusuf")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "cards", "shells", "stamps", "eggs",
         "bottles", "tickets", "flowers", "coins", "buttons", "candles")
PLACES = ("the market", "the shop", "the fair", "school", "the library", "the bakery", "the park")


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    family: str  # totals, differences, rates, sharing, percentages, time, money
    texts: tuple[str, ...]  # wordings of the question
    draw: Callable[[Random], dict[str, float]]  # the operands shown in the question
    expression: str  # the calculator expression, a format string over the operands
    answers: tuple[str, ...]  # answer sentences quoting {result}; ``{op}`` is drawn from + - * (stated)


def _ints(**ranges: tuple[int, int]) -> Callable[[Random], dict[str, float]]:
    return lambda r: {k: r.randint(lo, hi) for k, (lo, hi) in ranges.items()}


def _share(r: Random) -> dict[str, float]:
    people, each = r.randint(2, 12), r.randint(2, 40)
    return {"a": people * each, "b": people}


def _price(r: Random) -> dict[str, float]:
    return {"a": r.randint(2, 9), "b": r.randint(100, 2500) / 100}


def _unit_price(r: Random) -> dict[str, float]:
    n, each = r.randint(2, 12), r.randint(1, 30)
    return {"a": n * each, "b": n}


def _change(r: Random) -> dict[str, float]:
    a, b = r.randint(2, 6), r.randint(1, 15)
    return {"a": a, "b": b, "c": a * b + r.randint(1, 60)}


T = Template
TEMPLATES: tuple[Template, ...] = (
    # -- totals
    T("totals.together", "totals", (
        "{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
        "There are {a} {item} in a box and {b} in a bag. How many {item} are there altogether?",
        "{name} collected {a} {item} on Monday and {b} on Tuesday. What is the total?",
    ), _ints(a=(3, 400), b=(3, 400)), "{a} + {b}", ("{name} has {result} {item}.", "There are {result} {item} in all.")),
    T("totals.groups", "totals", (
        "Each box holds {a} {item}. How many {item} are in {b} boxes?",
        "{name} buys {b} packs of {item} with {a} in each pack. How many {item} is that?",
        "A shelf has {b} rows of {a} {item}. How many {item} are on the shelf?",
    ), _ints(a=(2, 60), b=(2, 30)), "{a} * {b}", ("That is {result} {item}.", "There are {result} {item}.")),
    T("totals.three", "totals", (
        "{name} read {a} pages, then {b} pages, then {c} pages. How many pages in all?",
        "A farm has {a} cows, {b} sheep and {c} goats. How many animals does it have?",
    ), _ints(a=(2, 300), b=(2, 300), c=(2, 300)), "{a} + {b} + {c}", ("The total is {result}.",)),
    # -- differences
    T("differences.left", "differences", (
        "{name} had {a} {item} and gave away {b}. How many {item} are left?",
        "A jar held {a} {item}. {name} took out {b}. How many {item} remain in the jar?",
        "{name} had {a} {item} and lost {b} of them. How many does {name} still have?",
    ), _ints(a=(40, 900), b=(2, 39)), "{a} - {b}", ("{name} has {result} {item} left.", "{result} {item} are left.")),
    T("differences.more", "differences", (
        "{name} has {a} {item} and a friend has {b}. How many more {item} does {name} have?",
        "The red team scored {a} points and the blue team scored {b}. By how many points did red win?",
    ), _ints(a=(50, 999), b=(2, 49)), "{a} - {b}", ("The difference is {result}.",)),
    # -- rates
    T("rates.distance", "rates", (
        "A car drives at {a} km per hour for {b} hours. How far does it go?",
        "A train travels {a} kilometres each hour. How many kilometres does it cover in {b} hours?",
    ), _ints(a=(20, 130), b=(2, 9)), "{a} * {b}", ("It travels {result} km.",)),
    T("rates.unit_price", "rates", (
        "{b} {item} cost {a} dollars in total. How much does one cost?",
        "{name} paid {a} dollars for {b} {item}. What was the price of each?",
    ), _unit_price, "{a} / {b}", ("Each one costs {result} dollars.", "One costs {result} dollars.")),
    # -- sharing
    T("sharing.equal", "sharing", (
        "{name} shares {a} {item} equally among {b} friends. How many does each friend get?",
        "{a} {item} are split evenly into {b} bags. How many {item} go in each bag?",
        "A teacher hands out {a} {item} to {b} students, the same number to each. How many does each get?",
    ), _share, "{a} / {b}", ("Each gets {result} {item}.", "That is {result} {item} each.")),
    # -- percentages
    T("percentages.of", "percentages", (
        "What is {a} percent of {b}?",
        "{a}% of the {b} {item} at {place} are sold. How many {item} are sold?",
        "A class of {b} students voted, and {a}% chose pizza. How many chose pizza?",
    ), lambda r: {"a": r.choice((10, 20, 25, 30, 40, 50, 60, 75, 80)), "b": r.randint(1, 40) * 20},
        "{b} * {a} / 100", ("That is {result}.", "{result} of them.")),
    T("percentages.discount", "percentages", (
        "A coat costs {b} dollars and is {a}% off. What is the sale price?",
        "{name} buys a bike priced at {b} dollars with a {a}% discount. How much does {name} pay?",
    ), lambda r: {"a": r.choice((10, 20, 25, 30, 40, 50)), "b": r.randint(2, 50) * 20},
        "{b} - {b} * {a} / 100", ("The sale price is {result} dollars.",)),
    # -- time
    T("time.minutes", "time", (
        "How many minutes are in {a} hours and {b} minutes?",
        "A film lasts {a} hours and {b} minutes. How long is it in minutes?",
    ), _ints(a=(1, 9), b=(1, 59)), "{a} * 60 + {b}", ("That is {result} minutes.",)),
    T("time.days", "time", (
        "How many hours are there in {a} days?",
        "{name} went camping for {a} days. How many hours was that?",
    ), _ints(a=(2, 60)), "{a} * 24", ("That is {result} hours.",)),
    # -- money
    T("money.cost", "money", (
        "{name} buys {a} {item} at {b} dollars each. How much does {name} pay?",
        "One of the {item} at {place} costs {b} dollars. What do {a} of them cost?",
    ), _price, "{a} * {b}", ("{name} pays {result} dollars.", "They cost {result} dollars.")),
    T("money.saving", "money", (
        "{name} saves {a} dollars a week. How much is saved after {b} weeks?",
        "Every month {name} puts {a} dollars in a jar. How much is in the jar after {b} months?",
    ), _ints(a=(2, 90), b=(2, 52)), "{a} * {b}", ("{name} saves {result} dollars.",)),
    # -- stated expressions
    T("stated.binary", "stated", (
        "What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a}{op}{b}.", "How much is {a} {op} {b}?",
    ), lambda r: {"a": r.randint(2, 999), "b": r.randint(2, 99)}, "{a} {op} {b}", ("{a} {op} {b} is {result}.",)),
    # -- held out for evaluation (EVAL): other structures and wordings
    T("eval.totals.pairs", "totals", (
        "At {place} there are {a} benches with {b} people on each. How many people are sitting?",
        "{name} packs {a} lunch boxes, each with {b} {item}. How many {item} are packed?",
    ), _ints(a=(3, 99), b=(3, 31)), "{a} * {b}", ("There are {result}.",)),
    T("eval.differences.short", "differences", (
        "{name} needs {a} {item} but only has {b}. How many more does {name} need?",
        "A puzzle has {a} pieces and {b} are already placed. How many pieces are still missing?",
    ), _ints(a=(43, 999), b=(3, 39)), "{a} - {b}", ("{result} more are needed.",)),
    T("eval.rates.time", "rates", (
        "A printer prints {a} pages a minute. How many pages does it print in {b} minutes?",
        "A pump moves {a} litres each minute. How many litres does it move in {b} minutes?",
    ), _ints(a=(3, 99), b=(3, 31)), "{a} * {b}", ("That is {result}.",)),
    T("eval.sharing.teams", "sharing", (
        "{a} children are put into {b} equal teams. How many children are on each team?",
        "{name} cuts a {a} cm ribbon into {b} equal pieces. How long is each piece in cm?",
    ), _share, "{a} / {b}", ("Each has {result}.",)),
    T("eval.percentages.tip", "percentages", (
        "A meal costs {b} dollars and {name} leaves a {a}% tip. How much is the tip?",
        "A bill of {b} dollars gets a {a}% service charge. How much is the charge in dollars?",
    ), lambda r: {"a": r.choice((3, 7, 15, 35, 55, 75, 95)), "b": r.randint(1, 50) * 100 + 3},
        "{b} * {a} / 100", ("That is {result}.",)),
    T("eval.time.weeks", "time", (
        "How many days are there in {a} weeks and {b} days?",
        "{name}'s holiday lasts {a} weeks and {b} days. How many days is that?",
    ), _ints(a=(3, 51), b=(3, 6)), "{a} * 7 + {b}", ("That is {result} days.",)),
    T("eval.money.change", "money", (
        "{name} buys {a} {item} at {b} dollars each and pays with {c} dollars. How much change is due?",
        "At {place}, {a} {item} cost {b} dollars each. {name} hands over {c} dollars. What is the change?",
    ), _change, "{c} - {a} * {b}", ("The change is {result} dollars.",)),
)
STATED_EVAL = T("eval.stated", "stated", ("What is {a}{op}{b}?", "What is {a} {op} {b}?", "Work out {a} {op} {b}."),
                lambda r: {"a": r.randint(2, 999), "b": r.randint(2, 99)}, "{a} {op} {b}", ("{result}",))
"""The held-out template of the stated-expression evaluation set ("What is 17*23?")."""
EVAL = frozenset(t.id for t in TEMPLATES if t.id.startswith("eval."))
"""Held-out templates: only in the evaluation sets."""
