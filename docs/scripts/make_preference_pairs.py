"""Generate the shipped preference pairs (`preference_pairs`) for DPO from templates.

    python docs/scripts/make_preference_pairs.py

Each template (addition, subtraction, multiplication, larger of two numbers, even or odd,
letters in a word, next/previous day, next month, capitals, chemical symbols, opposites,
everyday facts) asks a short question and gives a correct, concise `chosen` answer and a
`rejected` one that is either wrong (a near miss) or evasive. Everything is drawn from one
seeded `random.Random`, so the output is the same on every run. Every string is under 80
characters (they train a tiny CPU model). Prompts are unique: the first 200 go to train.jsonl,
the next 40 to test.jsonl, so no test prompt appears in train.
Rows: {"prompt": "What is 17 + 25?", "chosen": "17 + 25 = 42.", "rejected": "17 + 25 = 41."}.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tinkex_cookbook" / "data" / "preference_pairs"
SEED = 20240611
TRAIN, TEST = 200, 40
MAX_CHARS = 80
EVASIVE_SHARE = 0.25

EVASIVE = [
    "I don't know.", "I'm not sure, sorry.", "That is hard to say.", "You should look it up.",
    "I'd rather not answer that.", "Ask someone else.", "It depends.",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]
# (country, capital, a wrong answer people often give)
CAPITALS = [
    ("France", "Paris", "Lyon"), ("Japan", "Tokyo", "Osaka"), ("Italy", "Rome", "Milan"),
    ("Germany", "Berlin", "Munich"), ("Spain", "Madrid", "Barcelona"), ("Canada", "Ottawa", "Toronto"),
    ("Australia", "Canberra", "Sydney"), ("Brazil", "Brasilia", "Rio de Janeiro"),
    ("Turkey", "Ankara", "Istanbul"), ("Egypt", "Cairo", "Alexandria"), ("Kenya", "Nairobi", "Mombasa"),
    ("India", "New Delhi", "Mumbai"), ("China", "Beijing", "Shanghai"), ("Russia", "Moscow", "Saint Petersburg"),
    ("Mexico", "Mexico City", "Guadalajara"), ("Peru", "Lima", "Cusco"), ("Norway", "Oslo", "Bergen"),
    ("Sweden", "Stockholm", "Gothenburg"), ("Poland", "Warsaw", "Krakow"), ("Greece", "Athens", "Thessaloniki"),
    ("Portugal", "Lisbon", "Porto"), ("Ireland", "Dublin", "Cork"), ("Morocco", "Rabat", "Casablanca"),
    ("Vietnam", "Hanoi", "Ho Chi Minh City"), ("Switzerland", "Bern", "Zurich"),
    ("New Zealand", "Wellington", "Auckland"), ("South Korea", "Seoul", "Busan"),
    ("Argentina", "Buenos Aires", "Cordoba"), ("Nigeria", "Abuja", "Lagos"), ("Chile", "Santiago", "Valparaiso"),
]
# (element, symbol, a wrong symbol)
SYMBOLS = [
    ("gold", "Au", "Go"), ("silver", "Ag", "Si"), ("iron", "Fe", "Ir"), ("sodium", "Na", "So"),
    ("potassium", "K", "P"), ("lead", "Pb", "Le"), ("oxygen", "O", "Ox"), ("hydrogen", "H", "Hy"),
    ("carbon", "C", "Ca"), ("copper", "Cu", "Co"), ("helium", "He", "H"), ("nitrogen", "N", "Ni"),
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("open", "closed"), ("early", "late"), ("full", "empty"), ("hard", "soft"), ("up", "down"),
    ("wet", "dry"), ("old", "young"), ("tall", "short"), ("loud", "quiet"), ("rich", "poor"),
]
# (question, correct answer, wrong answer)
FACTS = [
    ("How many legs does a spider have?", "A spider has 8 legs.", "A spider has 6 legs."),
    ("How many legs does an insect have?", "An insect has 6 legs.", "An insect has 8 legs."),
    ("How many days are in a week?", "A week has 7 days.", "A week has 5 days."),
    ("How many months are in a year?", "A year has 12 months.", "A year has 10 months."),
    ("How many minutes are in an hour?", "An hour has 60 minutes.", "An hour has 100 minutes."),
    ("How many hours are in a day?", "A day has 24 hours.", "A day has 12 hours."),
    ("How many sides does a triangle have?", "A triangle has 3 sides.", "A triangle has 4 sides."),
    ("How many sides does a hexagon have?", "A hexagon has 6 sides.", "A hexagon has 8 sides."),
    ("At what Celsius temperature does water freeze?", "Water freezes at 0 degrees Celsius.",
     "Water freezes at 32 degrees Celsius."),
    ("At what Celsius temperature does water boil at sea level?", "Water boils at 100 degrees Celsius.",
     "Water boils at 90 degrees Celsius."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet.",
     "Saturn is the largest planet."),
    ("Which planet is closest to the Sun?", "Mercury is closest to the Sun.", "Venus is closest to the Sun."),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide.", "Plants take in helium."),
    ("What is the largest ocean on Earth?", "The Pacific is the largest ocean.",
     "The Atlantic is the largest ocean."),
    ("How many continents are there?", "There are 7 continents.", "There are 5 continents."),
    ("What color do you get by mixing blue and yellow?", "Blue and yellow make green.",
     "Blue and yellow make purple."),
    ("What color do you get by mixing red and white?", "Red and white make pink.",
     "Red and white make orange."),
    ("How many letters are in the English alphabet?", "The English alphabet has 26 letters.",
     "The English alphabet has 24 letters."),
]
WORDS = [
    "apple", "banana", "cherry", "garden", "window", "pencil", "rocket", "guitar", "planet",
    "bridge", "orange", "kitten", "forest", "island", "summer", "winter", "marble", "candle",
    "dragon", "pepper", "tomato", "button", "ladder", "mirror", "anchor", "puzzle",
]

Template = Callable[[random.Random], tuple[str, str, str]]


def near_miss(rng: random.Random, value: int) -> int:
    """A wrong answer close to ``value``: off by one to three, never negative."""
    wrong = value + rng.choice([-3, -2, -1, 1, 2, 3])
    return wrong if wrong >= 0 and wrong != value else value + 1


def addition(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    return f"What is {a} + {b}?", f"{a} + {b} = {a + b}.", f"{a} + {b} = {near_miss(rng, a + b)}."


def subtraction(rng: random.Random) -> tuple[str, str, str]:
    a, b = sorted((rng.randint(2, 99), rng.randint(2, 99)), reverse=True)
    return f"What is {a} - {b}?", f"{a} - {b} = {a - b}.", f"{a} - {b} = {near_miss(rng, a - b)}."


def multiplication(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    wrong = a * b + rng.choice([-a, a, -b, b, 1, -1])
    return f"What is {a} times {b}?", f"{a} x {b} = {a * b}.", f"{a} x {b} = {wrong}."


def larger(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.sample(range(10, 1000), 2)
    big, small = max(a, b), min(a, b)
    return f"Which is larger, {a} or {b}?", f"{big} is larger.", f"{small} is larger."


def parity(rng: random.Random) -> tuple[str, str, str]:
    n = rng.randint(3, 999)
    right, wrong = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    return f"Is {n} even or odd?", f"{n} is {right}.", f"{n} is {wrong}."


def letters(rng: random.Random) -> tuple[str, str, str]:
    word = rng.choice(WORDS)
    n = len(word)
    return (
        f"How many letters are in the word '{word}'?",
        f"'{word}' has {n} letters.",
        f"'{word}' has {n + rng.choice([-2, -1, 1, 2])} letters.",
    )


def next_day(rng: random.Random) -> tuple[str, str, str]:
    i = rng.randrange(7)
    if rng.random() < 0.5:
        return (f"What day comes after {DAYS[i]}?", f"{DAYS[(i + 1) % 7]} comes after {DAYS[i]}.",
                f"{DAYS[(i + 2) % 7]} comes after {DAYS[i]}.")
    return (f"What day comes before {DAYS[i]}?", f"{DAYS[i - 1]} comes before {DAYS[i]}.",
            f"{DAYS[(i + 1) % 7]} comes before {DAYS[i]}.")


def next_month(rng: random.Random) -> tuple[str, str, str]:
    i = rng.randrange(12)
    return (f"What month comes after {MONTHS[i]}?", f"{MONTHS[(i + 1) % 12]} comes after {MONTHS[i]}.",
            f"{MONTHS[i - 1]} comes after {MONTHS[i]}.")


def capital(rng: random.Random) -> tuple[str, str, str]:
    country, right, wrong = rng.choice(CAPITALS)
    return (f"What is the capital of {country}?", f"The capital of {country} is {right}.",
            f"The capital of {country} is {wrong}.")


def symbol(rng: random.Random) -> tuple[str, str, str]:
    element, right, wrong = rng.choice(SYMBOLS)
    return (f"What is the chemical symbol for {element}?", f"The symbol for {element} is {right}.",
            f"The symbol for {element} is {wrong}.")


def opposite(rng: random.Random) -> tuple[str, str, str]:
    word, other = rng.choice(OPPOSITES)
    if rng.random() < 0.5:
        word, other = other, word
    return f"What is the opposite of '{word}'?", f"The opposite of '{word}' is '{other}'.", f"It is '{word}'."


def fact(rng: random.Random) -> tuple[str, str, str]:
    return rng.choice(FACTS)


TEMPLATES: list[Template] = [
    addition, subtraction, multiplication, larger, parity, letters, next_day, next_month, capital,
    symbol, opposite, fact,
]


def pairs(seed: int = SEED) -> Iterator[dict[str, str]]:
    """Unique prompts, a template at a time, from one seeded generator; some rejections evasive."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        prompt, chosen, rejected = rng.choice(TEMPLATES)(rng)
        evasive = rng.random() < EVASIVE_SHARE
        if evasive:
            rejected = rng.choice(EVASIVE)
        if prompt in seen:
            continue
        seen.add(prompt)
        assert chosen != rejected and all(len(s) < MAX_CHARS for s in (prompt, chosen, rejected)), prompt
        yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def build(seed: int = SEED) -> dict[str, list[dict[str, str]]]:
    rows = []
    for row in pairs(seed):
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
