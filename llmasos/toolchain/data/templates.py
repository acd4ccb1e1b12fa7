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


def _groups_of(r: Random) -> dict[str, float]:
    size, groups = r.randint(2, 12), r.randint(2, 40)
    return {"a": size * groups, "b": size}


def _keep_rest(r: Random) -> dict[str, float]:
    friends, each, kept = r.randint(2, 9), r.randint(2, 20), r.randint(1, 20)
    return {"a": friends * each + kept, "b": friends, "c": kept}


def _one_note(r: Random) -> dict[str, float]:
    price = r.randint(2, 60)
    return {"b": price, "c": r.choice((20, 50, 100)) if price < 20 else 100}


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
    # -- more training templates: many wordings per pattern, numbers in either order, question first or
    # last, irrelevant numbers ({d}: shown, not used), and unit conversions whose constant (7, 12, 24,
    # 60) is not in the question; the model has to read the operation, not recall a template
    T("totals.bags_plus", "totals", (
        "{name} has {a} bags with {b} {item} in each and {c} loose {item}. How many {item} is that in all?",
        "How many {item} are there if {a} trays hold {b} each and {c} more lie on the table?",
    ), _ints(a=(2, 30), b=(2, 40), c=(1, 60)), "{a} * {b} + {c}", ("There are {result} {item}.",)),
    T("totals.dozens", "totals", (
        "{name} buys {a} dozen eggs. How many eggs is that?",
        "A baker sells {a} dozen rolls. How many rolls does she sell?",
        "How many {item} are in {a} dozen?",
    ), _ints(a=(2, 80)), "{a} * 12", ("That is {result}.", "There are {result}.")),
    T("totals.seats", "totals", (
        "A hall has {a} rows of chairs and every row has {b} chairs. How many chairs are there?",
        "How many tiles are on a floor laid in {b} rows of {a} tiles?",
        "A parking lot has {a} levels with {b} spaces on each level. How many spaces in total?",
    ), _ints(a=(2, 60), b=(2, 60)), "{a} * {b}", ("There are {result}.",)),
    T("totals.distractor", "totals", (
        "{name} is {d} years old and has {a} {item}. Then {name} finds {b} more. How many {item} now?",
        "A bus with {d} windows carries {a} adults and {b} children. How many people are on the bus?",
    ), _ints(a=(3, 500), b=(3, 500), d=(5, 60)), "{a} + {b}", ("There are {result}.",)),
    T("totals.daily_weeks", "totals", (
        "{name} swims {a} laps every day. How many laps does {name} swim in {b} weeks?",
        "A hen lays {a} eggs a day. How many eggs does it lay in {b} weeks?",
    ), _ints(a=(2, 40), b=(2, 20)), "{a} * 7 * {b}", ("That is {result}.",)),
    T("differences.spent", "differences", (
        "{name} had {a} dollars and spent {b} dollars on {item}. How many dollars are left?",
        "How much money is left if {name} starts with {a} dollars and spends {b}?",
    ), _ints(a=(20, 900), b=(2, 19)), "{a} - {b}", ("{name} has {result} dollars left.",)),
    T("differences.bus", "differences", (
        "A bus had {a} passengers. At a stop {b} got off and {c} got on. How many passengers are on it now?",
        "A library had {a} books. It lent out {b} and got back {c}. How many books does it have now?",
    ), _ints(a=(30, 300), b=(2, 29), c=(2, 60)), "{a} - {b} + {c}", ("There are {result} now.",)),
    T("differences.to_go", "differences", (
        "A book has {a} pages and {name} has read {b} of them. How many pages are left to read?",
        "A road is {a} km long. {name} has driven {b} km of it. How many km remain?",
        "How many more points does a team with {b} points need to reach {a} points?",
    ), _ints(a=(40, 900), b=(2, 39)), "{a} - {b}", ("{result} are left.",)),
    T("differences.taller", "differences", (
        "A tree is {a} cm tall and a bush is {b} cm tall. How much taller is the tree?",
        "{name} weighs {b} kg and a brother weighs {a} kg. How much heavier is the brother?",
    ), _ints(a=(50, 900), b=(5, 49)), "{a} - {b}", ("The difference is {result}.",)),
    T("rates.per_minute", "rates", (
        "{name} types {a} words per minute. How many words does {name} type in {b} minutes?",
        "A machine fills {a} bottles every minute. How many bottles does it fill in {b} minutes?",
        "How many times does a heart beat in {b} minutes at {a} beats a minute?",
    ), _ints(a=(2, 120), b=(2, 60)), "{a} * {b}", ("That is {result}.",)),
    T("rates.per_day", "rates", (
        "A factory makes {a} toys each day. How many toys does it make in {b} days?",
        "{name} walks {a} km a day for {b} days. How far is that in km?",
        "In {b} days, how many {item} does {name} sell when selling {a} a day?",
    ), _ints(a=(2, 200), b=(2, 40)), "{a} * {b}", ("That is {result}.",)),
    T("rates.hourly_pay", "rates", (
        "{name} earns {a} dollars an hour and works {b} hours. How much does {name} earn?",
        "A plumber charges {a} dollars per hour. What does a {b} hour job cost?",
    ), _ints(a=(8, 90), b=(2, 40)), "{a} * {b}", ("That is {result} dollars.",)),
    T("rates.speed", "rates", (
        "A cyclist rides {a} km in {b} hours at a steady speed. How many km does she ride each hour?",
        "A pump empties {a} litres in {b} minutes. How many litres a minute is that?",
    ), _share, "{a} / {b}", ("That is {result} each.",)),
    T("rates.minute_hours", "rates", (
        "A tap drips {a} drops a minute. How many drops fall in {b} hours?",
        "A fan turns {a} times each minute. How many turns does it make in {b} hours?",
    ), _ints(a=(2, 90), b=(2, 12)), "{a} * 60 * {b}", ("That is {result}.",)),
    T("sharing.groups_of", "sharing", (
        "{a} students form groups of {b}. How many groups are there?",
        "How many boxes are needed to pack {a} {item} with {b} in each box?",
    ), _groups_of, "{a} / {b}", ("There are {result}.",)),
    T("sharing.bill", "sharing", (
        "{b} friends split a bill of {a} dollars equally. How much does each one pay?",
        "A prize of {a} dollars is shared equally by {b} winners. How much does each winner get?",
    ), _share, "{a} / {b}", ("Each pays {result} dollars.",)),
    T("sharing.per_day", "sharing", (
        "{name} reads a {a} page book in {b} days, the same number of pages each day. How many pages a day?",
        "A farmer picks {a} {item} over {b} days, the same amount every day. How many a day?",
    ), _share, "{a} / {b}", ("That is {result} a day.",)),
    T("sharing.keep_rest", "sharing", (
        ("{name} has {a} {item}, keeps {c} and shares the rest equally among {b} friends. How many does "
         "each friend get?"),
    ), _keep_rest, "({a} - {c}) / {b}", ("Each friend gets {result}.",)),
    T("percentages.increase", "percentages", (
        "A price of {b} dollars goes up by {a}%. What is the new price?",
        "A town of {b} people grows by {a}% this year. How many people live there now?",
    ), lambda r: {"a": r.choice((5, 10, 20, 25, 40, 50)), "b": r.randint(2, 60) * 20},
        "{b} + {b} * {a} / 100", ("The new value is {result}.",)),
    T("percentages.share", "percentages", (
        "{name} scored {a}% on a test of {b} questions. How many questions were right?",
        "Of {b} seeds planted, {a}% came up. How many came up?",
        "What is the sales tax on a {b} dollar lamp when the tax is {a}%?",
    ), lambda r: {"a": r.choice((5, 8, 12, 20, 25, 45, 60, 65, 90)), "b": r.randint(1, 40) * 100},
        "{b} * {a} / 100", ("That is {result}.",)),
    T("percentages.saved", "percentages", (
        "{name} earns {b} dollars and saves {a}% of it. How much does {name} save?",
        "{name} puts {a}% of a {b} dollar gift in the bank. How many dollars is that?",
    ), lambda r: {"a": r.choice((10, 20, 25, 30, 40, 50, 60, 80)), "b": r.randint(1, 50) * 20},
        "{b} * {a} / 100", ("{name} saves {result} dollars.",)),
    T("time.hours", "time", (
        "How many minutes are there in {a} hours?",
        "A flight takes {a} hours. How many minutes is that?",
    ), _ints(a=(2, 48)), "{a} * 60", ("That is {result} minutes.",)),
    T("time.seconds", "time", (
        "How many seconds are there in {a} minutes and {b} seconds?",
        "A song lasts {a} minutes and {b} seconds. How long is it in seconds?",
    ), _ints(a=(1, 20), b=(1, 59)), "{a} * 60 + {b}", ("That is {result} seconds.",)),
    T("time.weeks", "time", (
        "How many days are there in {a} weeks?",
        "{name} trains for {a} weeks. How many days is that?",
    ), _ints(a=(2, 80)), "{a} * 7", ("That is {result} days.",)),
    T("time.years_months", "time", (
        "How many months are there in {a} years and {b} months?",
        "A lease runs for {a} years and {b} months. How many months is that?",
    ), _ints(a=(1, 30), b=(1, 11)), "{a} * 12 + {b}", ("That is {result} months.",)),
    T("time.days_hours", "time", (
        "How many hours are there in {a} days and {b} hours?",
        "A race lasts {a} days and {b} hours. How many hours is that?",
    ), _ints(a=(1, 20), b=(1, 23)), "{a} * 24 + {b}", ("That is {result} hours.",)),
    T("time.practice", "time", (
        "{name} practises the piano for {a} minutes a day. How many minutes in {b} days?",
        "For {b} days, {name} jogs {a} minutes each morning. How many minutes of jogging is that?",
    ), _ints(a=(5, 90), b=(2, 30)), "{a} * {b}", ("That is {result} minutes.",)),
    T("money.change_one", "money", (
        "{name} buys a book for {b} dollars and pays with a {c} dollar note. How much change?",
        "A lunch costs {b} dollars. {name} pays {c} dollars. How much money comes back?",
    ), _one_note, "{c} - {b}", ("The change is {result} dollars.",)),
    T("money.left_after", "money", (
        "{name} has {c} dollars and buys {a} {item} for {b} dollars each. How many dollars are left?",
        "With {c} dollars in a wallet, {name} pays for {a} {item} costing {b} dollars apiece. What remains?",
    ), _change, "{c} - {a} * {b}", ("{name} has {result} dollars left.",)),
    T("money.two_things", "money", (
        "{name} buys a hat for {a} dollars and a scarf for {b} dollars. How much is spent in all?",
        "A ticket costs {a} dollars and a drink costs {b} dollars. What do both cost together?",
    ), _ints(a=(2, 200), b=(2, 200)), "{a} + {b}", ("That is {result} dollars.",)),
    T("money.tickets", "money", (
        ("Adult tickets cost {b} dollars and child tickets cost {c} dollars. What do {a} adult and {d} "
         "child tickets cost?"),
    ), _ints(a=(1, 9), b=(5, 40), c=(2, 20), d=(1, 9)), "{a} * {b} + {d} * {c}", ("They cost {result} dollars.",)),
    T("stated.more", "stated", (
        "Find {a} {op} {b}.", "{a} {op} {b} = ?", "What do you get from {a}{op}{b}?", "Tell me {a} {op} {b}.",
    ), lambda r: {"a": r.randint(2, 999), "b": r.randint(2, 99)}, "{a} {op} {b}", ("{a} {op} {b} = {result}.",)),
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
VALIDATION = ("differences.taller", "rates.hourly_pay", "sharing.bill", "percentages.saved", "time.years_months",
              "money.change_one")
"""Training templates a build may keep out of its data, to measure how it does on unseen wordings
(``build.Recipe.holdout``; ``python -m llmasos.toolchain.data.wordproblems validation``): tuning
choices are made on these, never on the evaluation sets."""
