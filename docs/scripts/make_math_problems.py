"""Generate the shipped grade-school math word problems (`math_word_problems`) from templates.

    python docs/scripts/make_math_problems.py

Each template (shopping totals, change, distance at a speed, pages a day, sharing equally, ages,
areas, perimeters, boxes, wages, daily production) draws its names and numbers from one seeded
`random.Random`, so the output is the same on every run. Answers are positive integers written
as plain strings. Questions are unique: the first 200 go to train.jsonl, the next 40 to
test.jsonl, so no test question appears in train. Rows: {"question": "...", "answer": "42"}.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tinkex_cookbook" / "data" / "math_word_problems"
SEED = 20240607
TRAIN, TEST = 200, 40

NAMES = [
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jamal", "Keiko",
    "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor",
    "Wen", "Yara", "Zoe",
]
ITEMS = [
    ("notebook", "notebooks"), ("pencil", "pencils"), ("apple", "apples"), ("sandwich", "sandwiches"),
    ("ticket", "tickets"), ("ball", "balls"), ("book", "books"), ("cupcake", "cupcakes"),
    ("plant", "plants"), ("shirt", "shirts"),
]
THINGS = ["marbles", "stickers", "cookies", "stamps", "shells", "crayons", "cards", "beads"]
VEHICLES = ["car", "train", "bus", "truck", "boat"]
FLOORS = ["room", "patio", "classroom", "kitchen floor", "garden", "playground"]
FENCED = ["garden", "field", "yard", "playground", "pen", "pasture"]
GOODS = [
    ("bakery", "bakes", "loaves of bread"), ("farm", "collects", "eggs"), ("workshop", "builds", "chairs"),
    ("factory", "makes", "toys"),
]

Template = Callable[[random.Random], tuple[str, int]]


def shopping_total(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    (_, first), (_, second) = rng.sample(ITEMS, 2)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    p, q = rng.randint(1, 15), rng.randint(1, 15)
    question = (
        f"{name} buys {a} {first} at ${p} each and {b} {second} at ${q} each. "
        f"How many dollars does {name} spend in total?"
    )
    return question, a * p + b * q


def change_left(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    _, item = rng.choice(ITEMS)
    a, p = rng.randint(2, 8), rng.randint(2, 12)
    money = a * p + rng.randint(1, 40)
    question = (
        f"{name} has ${money} and buys {a} {item} that cost ${p} each. "
        f"How many dollars does {name} have left?"
    )
    return question, money - a * p


def distance(rng: random.Random) -> tuple[str, int]:
    vehicle = rng.choice(VEHICLES)
    speed, hours = rng.randint(3, 16) * 5, rng.randint(2, 9)
    question = (
        f"A {vehicle} travels at {speed} miles per hour for {hours} hours. "
        f"How many miles does it travel?"
    )
    return question, speed * hours


def reading_days(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    pages, days = rng.randint(5, 40), rng.randint(3, 15)
    question = (
        f"{name} reads {pages} pages every day. How many days does it take {name} "
        f"to read a {pages * days}-page book?"
    )
    return question, days


def sharing(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    things = rng.choice(THINGS)
    each, friends = rng.randint(3, 25), rng.randint(2, 9)
    question = (
        f"{name} has {each * friends} {things} and shares them equally among {friends} friends. "
        f"How many {things} does each friend get?"
    )
    return question, each


def ages(rng: random.Random) -> tuple[str, int]:
    older, younger = rng.sample(NAMES, 2)
    age, gap, years = rng.randint(4, 40), rng.randint(2, 30), rng.randint(2, 20)
    question = (
        f"{younger} is {age} years old. {older} is {gap} years older than {younger}. "
        f"How old will {older} be in {years} years?"
    )
    return question, age + gap + years


def area(rng: random.Random) -> tuple[str, int]:
    place = rng.choice(FLOORS)
    length, width = sorted((rng.randint(3, 30), rng.randint(2, 20)), reverse=True)
    question = (
        f"A rectangular {place} is {length} meters long and {width} meters wide. "
        f"What is its area in square meters?"
    )
    return question, length * width


def perimeter(rng: random.Random) -> tuple[str, int]:
    place = rng.choice(FENCED)
    length, width = sorted((rng.randint(3, 40), rng.randint(2, 30)), reverse=True)
    question = (
        f"A rectangular {place} is {length} meters long and {width} meters wide. "
        f"How many meters of fence are needed to go all the way around it?"
    )
    return question, 2 * (length + width)


def boxes(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    things = rng.choice(THINGS)
    count, per_box = rng.randint(2, 12), rng.randint(4, 24)
    given = rng.randint(1, count * per_box - 1)
    question = (
        f"{name} has {count} boxes with {per_box} {things} in each box and gives away {given} {things}. "
        f"How many {things} does {name} have left?"
    )
    return question, count * per_box - given


def wages(rng: random.Random) -> tuple[str, int]:
    name = rng.choice(NAMES)
    rate, hours, days = rng.randint(8, 30), rng.randint(2, 8), rng.randint(2, 6)
    question = (
        f"{name} earns ${rate} an hour and works {hours} hours a day for {days} days. "
        f"How many dollars does {name} earn?"
    )
    return question, rate * hours * days


def production(rng: random.Random) -> tuple[str, int]:
    place, verb, goods = rng.choice(GOODS)
    morning, afternoon, days = rng.randint(5, 60), rng.randint(5, 60), rng.randint(2, 7)
    question = (
        f"A {place} {verb} {morning} {goods} every morning and {afternoon} every afternoon. "
        f"How many {goods} does it {verb.removesuffix('s')} in {days} days?"
    )
    return question, (morning + afternoon) * days


TEMPLATES: list[Template] = [
    shopping_total, change_left, distance, reading_days, sharing, ages, area, perimeter, boxes,
    wages, production,
]


def problems(seed: int = SEED) -> Iterator[dict[str, str]]:
    """Unique problems, cycling through the templates, from one seeded generator."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        template = rng.choice(TEMPLATES)
        question, answer = template(rng)
        if question in seen:
            continue
        seen.add(question)
        assert answer > 0, (question, answer)
        yield {"question": question, "answer": str(answer)}


def build(seed: int = SEED) -> dict[str, list[dict[str, str]]]:
    rows = []
    for row in problems(seed):
        rows.append(row)
        if len(rows) == TRAIN + TEST:
            break
    return {"train": rows[:TRAIN], "test": rows[TRAIN:]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for split, rows in build().items():
        with open(OUT / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    main()
