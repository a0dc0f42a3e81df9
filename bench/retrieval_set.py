"""Makes the labelled retrieval set `bench/data/retrieval_set.json` (committed; the bench reads
it, never this script): public-domain text this script writes itself — a gazetteer of invented
towns, ten facts each, one passage per fact — and questions whose answer is in one known
passage, paraphrased: a question shares at most MAX_OVERLAP of its content words with its
passage (the town's name, mostly), so neither the words nor the name alone find the answer.
Every town has the same ten kinds of fact, so a question must be matched by meaning among
its town's passages and by name among the other towns' passages of its kind.

    python bench/retrieval_set.py        # rewrites bench/data/retrieval_set.json

Deterministic (a fixed seed). Made and committed before any retrieval tuning.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SEED = 20261206
TOWNS = 125  # 1,250 passages
QUESTIONS_PER_TOWN = 2  # 250 questions; 1,000 passages answer none of them
MAX_OVERLAP = 0.5
OUT = Path(__file__).parent / "data" / "retrieval_set.json"

STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        """
    a an the of in on at to for from by with and or but is are was were be been being it its this
    that these those as into over under about what which who whom whose when where why how do does
    did has have had there their they them he she his her we our you your i me my not no so than
    then also only each every any some many much most more one two per up down out off if can could
    would should will just
    """,
    )
)

SYLLABLES = re.findall(
    r"\w+", "bar bel dor fen gar hal ket kor lin mar nes or pel quin ros sal tam ul ven wes yar zan thel brin"
)
FIRST = re.findall(
    r"\w+",
    "Anna Boris Clara Dmitri Elin Fedor Greta Hugo Ilse Jonas Karin Lev Mira Nils Olga Pavel Rosa Sten Tova Yuri",
)
LAST = re.findall(
    r"\w+", "Holt Varga Lind Petrov Aalto Brandt Sokol Krantz Moreau Ivers Falk Norden Rusk Tamm Weller Zorin"
)
TRADES = ["blacksmith", "fur trader", "ferryman", "miller", "surveyor", "stonemason", "fisherman", "priest"]
ORIGINS = ["the northern islands", "a coastal village", "the capital", "across the mountains", "the southern plains"]
SIDES = ["eastern", "western", "northern", "southern"]
INDUSTRIES = [
    ("timber milling", "sawmills"),
    ("copper mining", "mines"),
    ("shipbuilding", "yards"),
    ("wool weaving", "weaving sheds"),
    ("salmon canning", "canneries"),
    ("glassmaking", "glassworks"),
    ("paper production", "paper mills"),
    ("cheese making", "dairies"),
]
MONTHS = ["January", "March", "May", "June", "August", "October", "December"]
ACTIVITIES = [
    "boats decorated with lanterns parade along the harbour",
    "bakers compete to build the largest loaf",
    "choirs sing from the rooftops at dusk",
    "horses race across the frozen lake",
    "children carry paper lamps through the old streets",
    "farmers bring their best cattle to be judged",
]
MATERIALS = ["red brick", "grey granite", "white limestone", "black basalt", "painted timber", "steel and glass"]
LANDMARK_KINDS = ["Clock Tower", "Cathedral Spire", "Granary", "Water Tower", "Lighthouse", "Bell Tower"]
WINTERS = ["bitterly cold", "mild and wet", "long and dark", "windy but dry", "snowy and still"]
CITIES = ["Arnhavn", "Velstad", "Korrin", "Maldova Bay", "Osterlund", "Prevec"]
DISHES = [
    ("smoked eel pie", "a savoury pastry", "weddings"),
    ("blackberry dumplings", "a sweet steamed pudding", "harvest suppers"),
    ("barley soup with mutton", "a thick broth", "funerals"),
    ("honey rye cakes", "a dense spiced bread", "midwinter"),
    ("pickled herring on toast", "a sharp cold snack", "market days"),
    ("stuffed cabbage rolls", "a baked dish of rice and pork", "name days"),
]

# (kind, passage templates, question templates). A passage names the town as {town}; a
# question asks for the fact in other words.
FACTS: list[tuple[str, list[str], list[str]]] = [
    (
        "founding",
        [
            "{town} was founded in {year} by {person}, a {trade} who arrived from {origin}.",
            "The settlement of {town} dates from {year}, when {person}, a {trade} from {origin}, "
            "built the first house.",
        ],
        [
            "Who started the community of {town}, and when?",
            "When did the first settler put down roots at {town}?",
        ],
    ),
    (
        "river",
        [
            "{town} lies on the {side} bank of the {river} river, {km} kilometres upstream from the sea.",
            "Built along the {side} shore of the {river}, {town} sits {km} kilometres inland from its mouth.",
        ],
        [
            "How far from the coast is {town}, following its waterway?",
            "Which stream flows past {town}?",
        ],
    ),
    (
        "industry",
        [
            "The main industry in {town} is {industry}; about {workers} people work in its {places}.",
            "Most jobs in {town} depend on {industry}, with some {workers} workers employed in local {places}.",
        ],
        [
            "What do most residents of {town} do to earn a living?",
            "What trade keeps the economy of {town} going?",
        ],
    ),
    (
        "festival",
        [
            "Every {month}, {town} holds the {fest} festival, when {activity}.",
            "The {fest} festival takes place in {town} each {month}: {activity}.",
        ],
        [
            "Which yearly celebration happens at {town}, and what goes on during it?",
            "Is there an annual feast or fair at {town}?",
        ],
    ),
    (
        "landmark",
        [
            "The tallest building in {town} is the {landmark}, a {material} structure completed in {year}.",
            "Rising above the rooftops of {town}, the {landmark} was finished in {year} and is built of {material}.",
        ],
        [
            "What is the highest edifice at {town} made of?",
            "Which lofty construction dominates the skyline of {town}?",
        ],
    ),
    (
        "climate",
        [
            "Winters in {town} are {winter}, with snow lying on the ground for about {days} days a year.",
            "The cold season at {town} is {winter}; snow usually covers the streets for {days} days.",
        ],
        [
            "What is the weather like at {town} during the chilliest months?",
            "How many days of each year is {town} white with frost and flakes?",
        ],
    ),
    (
        "railway",
        [
            "A railway line reached {town} in {year}, linking it to {city} in {hours} hours.",
            "Trains first came to {town} in {year}; the journey to {city} takes {hours} hours.",
        ],
        [
            "Since when has {town} had a station, and how long is the trip to the nearest big city?",
            "How do travellers get from {town} to a larger urban centre by track?",
        ],
    ),
    (
        "population",
        [
            "At the last census {town} had {people} inhabitants, {pct} percent of them under twenty.",
            "{town} is home to {people} residents, and {pct} percent of its population is younger than twenty.",
        ],
        [
            "How many people dwell in {town}, and how young are they?",
            "What is the headcount of {town} according to the most recent count?",
        ],
    ),
    (
        "food",
        [
            "{town} is known for {dish}, {dish_kind} traditionally served at {occasion}.",
            "The speciality of {town} is {dish}: {dish_kind} that locals eat at {occasion}.",
        ],
        [
            "Which local delicacy is {town} famous for?",
            "What traditional meal would a visitor to {town} be offered?",
        ],
    ),
    (
        "council",
        [
            "{town} is governed by a council of {seats} members, led since {year} by mayor {person}.",
            "A {seats}-seat council runs {town}; {person} has chaired it as mayor since {year}.",
        ],
        [
            "Who is in charge of the local administration at {town}?",
            "How large is the governing body of {town}, and who heads it?",
        ],
    ),
]


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS}


def overlap(question: str, passage: str) -> float:
    asked = content_words(question)
    return len(asked & content_words(passage)) / max(len(asked), 1)


def town_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = "".join(rng.sample(SYLLABLES, rng.choice([2, 3]))).capitalize()
        if name not in taken and len(name) <= 12:
            taken.add(name)
            return name


def make() -> dict[str, object]:
    rng = random.Random(SEED)
    taken: set[str] = set()
    passages: list[dict[str, object]] = []
    questions: list[dict[str, object]] = []
    for _ in range(TOWNS):
        town = town_name(rng, taken)
        river = town_name(rng, taken)
        industry, places = rng.choice(INDUSTRIES)
        dish, dish_kind, occasion = rng.choice(DISHES)
        values = {
            "town": town,
            "river": river,
            "year": rng.randint(1120, 1960),
            "person": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            "trade": rng.choice(TRADES),
            "origin": rng.choice(ORIGINS),
            "side": rng.choice(SIDES),
            "km": rng.randint(3, 240),
            "industry": industry,
            "places": places,
            "workers": rng.randint(40, 4000),
            "month": rng.choice(MONTHS),
            "fest": f"{town_name(rng, taken)} {rng.choice(['Lantern', 'Harvest', 'Midsummer', 'Ice', 'Salt'])}",
            "activity": rng.choice(ACTIVITIES),
            "landmark": rng.choice(LANDMARK_KINDS),
            "material": rng.choice(MATERIALS),
            "winter": rng.choice(WINTERS),
            "days": rng.randint(5, 160),
            "city": rng.choice(CITIES),
            "hours": rng.randint(1, 14),
            "people": rng.randint(800, 90000),
            "pct": rng.randint(12, 41),
            "dish": dish,
            "dish_kind": dish_kind,
            "occasion": occasion,
            "seats": rng.choice([5, 7, 9, 11, 13, 15]),
        }
        ids = []
        for kind, passage_templates, question_templates in FACTS:
            fields = dict(values)
            if kind in {"landmark", "railway", "council"}:
                fields["year"] = rng.randint(1700, 2020)
            if kind == "council":
                fields["person"] = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            text = rng.choice(passage_templates).format(**fields)
            passage_id = f"p{len(passages):04d}"
            passages.append({"id": passage_id, "town": town, "kind": kind, "text": text})
            ids.append((passage_id, kind, text, question_templates))
        for passage_id, _kind, text, question_templates in rng.sample(ids, QUESTIONS_PER_TOWN):
            question = rng.choice(question_templates).format(town=town)
            share = overlap(question, text)
            assert share <= MAX_OVERLAP, (question, text, share)
            questions.append({"id": f"q{len(questions):03d}", "question": question, "answer": passage_id})
    return {
        "about": (
            "Labelled retrieval set made by bench/retrieval_set.py (seed "
            f"{SEED}): invented public-domain text. Each question's answer is one passage; a "
            f"question shares at most {MAX_OVERLAP:.0%} of its content words with it."
        ),
        "passages": passages,
        "questions": questions,
    }


if __name__ == "__main__":
    data = make()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    answers = {q["answer"] for q in data["questions"]}  # type: ignore[union-attr, index]
    print(
        f"{len(data['passages'])} passages, {len(data['questions'])} questions, "  # type: ignore[arg-type]
        f"{len(data['passages']) - len(answers)} distractors -> {OUT}"  # type: ignore[arg-type]
    )
