"""Write recipes/data/finance_patterns.csv: finsent's own labelled sentences for the patterns news models miss.

    python recipes/data/make_patterns.py            # rewrites finance_patterns.csv (deterministic)

Financial PhraseBank, Twitter and SEntFiN hold few sentences where the direction of a number and its
sentiment disagree ("the loss narrowed" is good news), where a negation or an expectation turns a word
around ("did not fall", "fell less than feared"), or where a clause after "but" decides. Models trained on
them learn "loss", "fell" and "debt" as bearish words. These sentences, written for finsent from the
templates below (MIT, like finsent), teach the patterns; they are training data only. `finsent check`'s
suite (finsent_cli/resources/checks) was written separately; these frames and company names differ from
its sentence forms (tests/test_patterns.py fails when a pattern sentence comes close to one of its cases),
so the suite stays a held-out measurement of whether the patterns generalise.

Labels follow an investor's reading, as PhraseBank's annotators were asked: a smaller loss, lower debt or
costs, a decline smaller than expected are positive; a larger loss, a shortfall against expectations
negative; facts with no direction (dates, meetings, listings, unchanged figures) neutral.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).with_name("finance_patterns.csv")
SEED = 2026
PER_TEMPLATE = 14

COMPANIES = [
    "Teollis Oyj", "Harbor Freight Lines", "Caradon Bank", "Elmstead Foods", "Pyrola Paper", "Birchfield Mining",
    "Aurora Telecom", "Saltmarsh Utilities", "Jorvik Steel", "Meridian Retail", "Valo Pharma", "Ostra Shipping",
    "Granite Insurance", "Lumen Software", "Redcliff Brewing", "Fennix Engineering", "Bayfront Hotels",
    "Quarry Cement", "Sunmark Chemicals", "Ambrose Media", "Tervo Group", "Wexford Motors", "the company",
    "the group", "the bank", "the retailer", "the insurer", "the carmaker", "the miner", "the airline",
]
PERIODS = [
    "the first quarter", "the second quarter", "the third quarter", "the fourth quarter", "the first half",
    "the January-June period", "the nine-month period", "the full year", "the fiscal year", "the reporting period",
]
CURRENCIES = ["EUR", "USD", "SEK", "GBP", "NOK", "$", "euros", "dollars"]
UNITS = ["mn", "million", "m", "bn", "billion"]

BAD = ["net loss", "operating loss", "pre-tax loss", "loss per share", "net debt", "debt burden", "costs",
       "operating expenses", "impairment charges", "write-downs", "credit losses", "loan-loss provisions",
       "restructuring charges", "cash burn", "deficit", "liabilities", "bad loans", "order cancellations"]
GOOD = ["net sales", "revenue", "operating profit", "net profit", "earnings per share", "order intake",
        "order backlog", "gross margin", "operating margin", "cash flow", "dividend", "market share",
        "same-store sales", "net interest income", "bookings", "EBITDA"]
DOWN = ["narrowed", "shrank", "decreased", "declined", "fell", "dropped", "eased", "was cut", "was reduced",
        "came down"]
UP = ["widened", "grew", "increased", "rose", "climbed", "jumped", "swelled", "soared", "deepened", "ballooned"]
GOOD_UP = ["rose", "increased", "grew", "climbed", "improved", "jumped", "surged", "strengthened", "went up"]
GOOD_DOWN = ["fell", "decreased", "declined", "dropped", "slipped", "weakened", "slumped", "went down", "shrank"]
REDUCE = ["cut", "reduced", "trimmed", "halved", "lowered", "slashed", "brought down", "paid down"]
EXPECT = ["analysts had expected", "forecasts had suggested", "the consensus had indicated", "economists had predicted",
          "the company itself had guided"]
FEARED = EXPECT + ["the market had feared", "investors had braced for"]  # only before a smaller-than-feared decline


def amount(rng: random.Random) -> float:
    return round(rng.uniform(0.5, 95.0), 1)


def money(rng: random.Random, value: float, cur: str | None = None, unit: str | None = None) -> str:
    cur, unit = cur or rng.choice(CURRENCIES), unit or rng.choice(UNITS)
    if cur == "$":
        return f"${value} {unit}"
    if cur in ("euros", "dollars"):
        return f"{value} million {cur}"
    return f"{cur} {value} {unit}"


def pair(rng: random.Random, larger_first: bool) -> tuple[str, str]:
    a, b = sorted(rng.sample([amount(rng) for _ in range(4)], 2))
    a, b = (b, a) if larger_first else (a, b)
    cur, unit = rng.choice(CURRENCIES), rng.choice(UNITS)
    return money(rng, a, cur, unit), money(rng, b, cur, unit)


def cap(text: str) -> str:
    return (text[0].upper() + text[1:]).replace("s's ", "s' ")


# Each template: (label, function(rng) -> sentence). The frames put the number first or last, compare
# with the year-ago figure in other words, or use a clause structure of their own; none repeats a sentence
# form of finsent check's suite (tests/test_patterns.py keeps them apart).
def bad_down(rng: random.Random) -> str:
    q, c, p = rng.choice(BAD), rng.choice(COMPANIES), rng.choice(PERIODS)
    new, old = pair(rng, larger_first=False)
    form = rng.randrange(6)
    if form == 0:
        return cap(f"At {new}, {c}'s {q} for {p} was well below the {old} booked a year ago.")
    if form == 1:
        return cap(f"{q} at {c} came to {new} in {p}, compared with {old} in the year-ago period.")
    if form == 2:
        return cap(f"{c} {rng.choice(['halved', 'more than halved', 'brought down'])} its {q} over {p}.")
    if form == 3:
        return cap(f"{c} has lowered its {q} by {rng.randint(5, 60)}% since {rng.randint(2008, 2024)}.")
    if form == 4:
        return cap(f"Compared with {old} a year earlier, {c}'s {q} {rng.choice(['eased', 'dropped', 'decreased'])} to {new} in {p}.")
    return cap(f"For {p}, {c} booked {q} of {new}, down from {old}.")


def bad_up(rng: random.Random) -> str:
    q, c, p = rng.choice(BAD), rng.choice(COMPANIES), rng.choice(PERIODS)
    new, old = pair(rng, larger_first=True)
    form = rng.randrange(6)
    if form == 0:
        return cap(f"At {new}, {c}'s {q} for {p} was well above the {old} booked a year ago.")
    if form == 1:
        return cap(f"{q} at {c} came to {new} in {p}, compared with {old} in the year-ago period.")
    if form == 2:
        return cap(f"{c} {rng.choice(['doubled', 'more than doubled', 'tripled'])} its {q} over {p}.")
    if form == 3:
        return cap(f"{c}'s {q} has climbed by {rng.randint(5, 80)}% since {rng.randint(2008, 2024)}.")
    if form == 4:
        return cap(f"Compared with {old} a year earlier, {c}'s {q} {rng.choice(['swelled', 'jumped', 'deepened', 'ballooned'])} to {new} in {p}.")
    return cap(f"For {p}, {c} booked {q} of {new}, up from {old}.")


def good_up(rng: random.Random) -> str:
    q, c, p = rng.choice(GOOD), rng.choice(COMPANIES), rng.choice(PERIODS)
    new, old = pair(rng, larger_first=True)
    form = rng.randrange(4)
    if form == 0:
        return cap(f"At {new}, {c}'s {q} for {p} was well above the {old} of a year ago.")
    if form == 1:
        return cap(f"{q} at {c} came to {new} in {p}, compared with {old} in the year-ago period.")
    if form == 2:
        return cap(f"Compared with {old} a year earlier, {c}'s {q} {rng.choice(GOOD_UP)} to {new} in {p}.")
    return cap(f"{c}'s {q} has {rng.choice(['grown', 'climbed', 'improved'])} by {rng.randint(3, 45)}% since {rng.randint(2008, 2024)}.")


def good_down(rng: random.Random) -> str:
    q, c, p = rng.choice(GOOD), rng.choice(COMPANIES), rng.choice(PERIODS)
    new, old = pair(rng, larger_first=False)
    form = rng.randrange(4)
    if form == 0:
        return cap(f"At {new}, {c}'s {q} for {p} was well below the {old} of a year ago.")
    if form == 1:
        return cap(f"{q} at {c} came to {new} in {p}, compared with {old} in the year-ago period.")
    if form == 2:
        return cap(f"Compared with {old} a year earlier, {c}'s {q} {rng.choice(GOOD_DOWN)} to {new} in {p}.")
    return cap(f"{c}'s {q} has {rng.choice(['shrunk', 'declined', 'weakened'])} by {rng.randint(3, 45)}% since {rng.randint(2008, 2024)}.")


def beat_low_expectations(rng: random.Random) -> str:
    q, c, p = rng.choice(GOOD), rng.choice(COMPANIES), rng.choice(PERIODS)
    n = rng.randint(2, 9)
    form = rng.randrange(5)
    if form == 0:
        return cap(f"{c} reported a {n}% drop in {q} for {p}, milder than the {n + rng.randint(3, 12)}% decline {rng.choice(FEARED)}.")
    if form == 1:
        return cap(f"{rng.choice(['Analysts', 'Investors', 'Brokers'])} had pencilled in a steeper fall in {q}; {c} reported a dip of only {n}% for {p}.")
    if form == 2:
        return cap(f"{c} topped the consensus estimate for {q} in {p}.")
    if form == 3:
        return cap(f"The decline in {c}'s {q} was not as deep as {rng.choice(FEARED)}.")
    return cap(f"{c}'s {q} for {p} surpassed market projections by a wide margin.")


def miss_expectations(rng: random.Random) -> str:
    q, c, p = rng.choice(GOOD), rng.choice(COMPANIES), rng.choice(PERIODS)
    n = rng.randint(1, 4)
    form = rng.randrange(5)
    if form == 0:
        return cap(f"{c} reported {n}% growth in {q} for {p}, short of the {n + rng.randint(3, 10)}% {rng.choice(EXPECT)}.")
    if form == 1:
        return cap(f"{rng.choice(['Analysts', 'Investors', 'Brokers'])} had pencilled in stronger {q}; {c} delivered growth of only {n}% in {p}.")
    if form == 2:
        return cap(f"{c} undershot the consensus estimate for {q} in {p}.")
    if form == 3:
        return cap(f"The increase in {c}'s {q} was not as strong as {rng.choice(EXPECT)}.")
    return cap(f"{c}'s {q} for {p} trailed market projections by a wide margin.")


def negated_bad(rng: random.Random) -> str:  # a bad event denied: positive
    c, q, p = rng.choice(COMPANIES), rng.choice(GOOD), rng.choice(PERIODS)
    form = rng.randrange(6)
    if form == 0:
        return cap(f"None of {c}'s divisions made a loss in {p}.")
    if form == 1:
        return cap(f"Contrary to earlier fears, {c}'s {q} has not shrunk; it grew {rng.randint(2, 20)}% in {p}.")
    if form == 2:
        return cap(f"{c} does not foresee any decline in {q} this year and confirmed its growth target.")
    if form == 3:
        return cap(f"{c} has not had to cut its {rng.choice(['guidance', 'outlook', 'forecast'])} and now sees {q} above last year's level.")
    if form == 4:
        return cap(f"Unlike a year earlier, {c} no longer has any loss-making units.")
    return cap(f"{c} avoided a loss in {p} and stayed profitable.")


def negated_good(rng: random.Random) -> str:  # a good event denied: negative
    c, q, p = rng.choice(COMPANIES), rng.choice(GOOD), rng.choice(PERIODS)
    form = rng.randrange(6)
    if form == 0:
        return cap(f"{c} has yet to return to profit; it lost money again in {p}.")
    if form == 1:
        return cap(f"{c} could not meet its own {q} target for {p}.")
    if form == 2:
        return cap(f"{c} sees no recovery in {q} before {rng.randint(2026, 2029)}.")
    if form == 3:
        return cap(f"{c} scrapped its dividend for {p}, the first time in {rng.randint(10, 40)} years that it pays none.")
    if form == 4:
        return cap(f"None of {c}'s divisions grew its {q} in {p}.")
    return cap(f"Despite its savings programme, {c} has not been able to bring down its {rng.choice(BAD)}.")


def contrast(rng: random.Random, label: str) -> str:
    c, p = rng.choice(COMPANIES), rng.choice(PERIODS)
    good_clauses = [
        f"{rng.choice(GOOD)} {rng.choice(GOOD_UP)} {rng.randint(5, 30)}%",
        f"the {rng.choice(BAD)} {rng.choice(['narrowed', 'was cut', 'shrank'])} sharply",
        "the full-year outlook was raised",
        "orders picked up strongly",
    ]
    bad_clauses = [
        f"{rng.choice(GOOD)} {rng.choice(GOOD_DOWN)} {rng.randint(5, 30)}%",
        f"the {rng.choice(BAD)} {rng.choice(['widened', 'rose', 'doubled'])}",
        "the full-year outlook was cut",
        "demand weakened markedly",
    ]
    i, j = rng.sample(range(4), 2)  # two different topics: no clause contradicts the other
    g, b = good_clauses[i], bad_clauses[j]
    first, last = (b, g) if label == "positive" else (g, b)  # the deciding part comes last
    form = rng.randrange(3)
    if form == 0:
        return cap(f"At {c}, {first} in {p}; however, {last}.")
    if form == 1:
        return cap(f"{first} at {c} in {p}. Still, {last}.")
    return cap(f"{c} said {first} in {p}, yet on balance {last}.")


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
CITIES = ["Helsinki", "Stockholm", "Oslo", "London", "Frankfurt", "New York", "Mumbai", "Espoo", "Tampere", "Zurich"]
COUNTRIES = ["Finland", "Sweden", "Poland", "India", "Germany", "the Baltic countries", "China", "Brazil"]
PRODUCTS = ["packaging board", "steel tubes", "industrial valves", "mobile network equipment", "frozen foods",
            "paper machines", "elevators", "medical imaging systems"]
ROLES = ["chief financial officer", "chief executive officer", "head of investor relations", "board member",
         "chairman of the board", "senior vice president, sales"]
EXCHANGES = ["Nasdaq Helsinki", "the Oslo Stock Exchange", "the London Stock Exchange", "Nasdaq Stockholm",
             "the Frankfurt Stock Exchange", "the National Stock Exchange of India"]


def neutral(rng: random.Random) -> str:
    c, p = rng.choice(COMPANIES), rng.choice(PERIODS)
    day, month, year = rng.randint(1, 28), rng.choice(MONTHS), rng.randint(2006, 2027)
    form = rng.randrange(10)
    if form == 0:
        return cap(f"{c} is headquartered in {rng.choice(CITIES)}.")
    if form == 1:
        return cap(f"The figures are compared with those of the corresponding period in {year - 1}.")
    if form == 2:
        return cap(f"{c} operates {rng.randint(2, 30)} plants in {rng.choice(COUNTRIES)}.")
    if form == 3:
        return cap(f"The transaction is subject to approval by the competition authorities.")
    if form == 4:
        return cap(f"{c} manufactures {rng.choice(PRODUCTS)}.")
    if form == 5:
        return cap(f"The agreement between {c} and its {rng.choice(['supplier', 'customer', 'partner'])} was signed on {month} {day}, {year}.")
    if form == 6:
        return cap(f"The interim report for {p} has not been audited.")
    if form == 7:
        return cap(f"The offer price is {money(rng, amount(rng)).split(' m')[0]} per share.")
    if form == 8:
        return cap(f"{c} will announce the details of the programme at a later date.")
    return cap(f"{c}'s {rng.choice(GOOD + BAD)} is reported under IFRS.")


TEMPLATES = [
    ("positive", bad_down, 10), ("negative", bad_up, 10), ("positive", good_up, 6), ("negative", good_down, 6),
    ("positive", beat_low_expectations, 8), ("negative", miss_expectations, 8), ("positive", negated_bad, 8),
    ("negative", negated_good, 8), ("positive", lambda r: contrast(r, "positive"), 8),
    ("negative", lambda r: contrast(r, "negative"), 8), ("neutral", neutral, 16),
]


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=OUT, help=f"where to write (default {OUT.name} beside this script)")
    out = ap.parse_args().output
    rng = random.Random(SEED)
    seen: set[str] = set()
    rows = []
    for label, make, weight in TEMPLATES:
        made, tries = 0, 0
        while made < weight * PER_TEMPLATE and tries < weight * PER_TEMPLATE * 20:
            tries += 1
            text = make(rng)
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
                made += 1
    rng.shuffle(rows)
    tmp = out.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)
    tmp.replace(out)
    counts = {k: sum(1 for _, lab in rows if lab == k) for k in ("negative", "neutral", "positive")}
    print(f"wrote {out}: {len(rows)} sentences {counts}")


if __name__ == "__main__":
    main()
