"""Near-miss guard of the semantic cache: rules that veto or penalise a hit that cosine alone would allow.

Embeddings put "enable 2FA" next to "disable 2FA" and "flights to Paris" next to "flights to Prague". The guard
extracts, from each prompt, the facts a cached answer depends on and compares them:

- negation: parity of negation markers (not, n't, never, no, without, unable, fail...);
- opposite actions: antonym axes (enable/disable, add/remove, increase/decrease, upgrade/downgrade, ...);
- numbers: after normalising number words and digits ("two" == "2", "1,000" == "1000", "5 pm" == "17:00");
- versions (v1.2 vs v1.3), dates (years, months, weekdays, today/tomorrow, this/next/last week...);
- units (km vs miles, GB vs MB, $ vs EUR, days vs hours);
- named entities: capitalised tokens not opening the sentence, acronyms, and a small gazetteer of places; two
  spellings are the same entity only if equal, or at edit distance 1 with both words >= 6 letters (a typo:
  "Barcelna" == "Barcelona"); a short word one letter off is another entity ("Pari" != "Paris");
- scope: a year, an entity or a number on one side only; "all/every" against "one/single".

A fact that differs on both sides costs HARD (1.0, which vetoes any hit); a fact on one side only costs a soft
penalty. `score = cosine - total penalty`; the calibration fits the threshold on that score.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["HARD", "Facts", "GuardDecision", "edit_distance", "extract", "guard", "normalize_numbers"]

HARD = 1.0


def _w(words: str) -> list[str]:
    return words.split()


def _ws(words: str) -> set[str]:
    return set(words.split())


_SOFT = {"date": 0.5, "number": 0.4, "version": 0.4, "entity": 0.5, "unit": 0.3, "scope": 0.15}

_UNITS_0 = _w("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
              "seventeen eighteen nineteen")
_TENS = dict(zip(_w("twenty thirty forty fifty sixty seventy eighty ninety"), range(20, 100, 10), strict=True))
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_WORDNUM = {w: i for i, w in enumerate(_UNITS_0)} | _TENS | {"dozen": 12, "a dozen": 12}
_ORDINALS = dict(zip(_w("first second third fourth fifth sixth seventh eighth ninth tenth"), range(1, 11),
                     strict=True))

_NEG = re.compile(r"\b(not|no|never|none|nothing|nobody|nowhere|without|cannot|unable|neither|nor|fails?|failed|"
                  r"failing)\b|n't\b")
_AXES: dict[str, tuple[str, int]] = {}
for _axis, _plus, _minus in [
    ("toggle", "enable enabled enabling activate turn-on switch-on", "disable disabled disabling deactivate turn-off "
     "switch-off"),
    ("add", "add adding added create insert attach", "remove removing removed delete deleting detach"),
    ("amount", "increase increasing raise more higher extend up", "decrease decreasing reduce lower less down shorten"),
    ("plan", "upgrade upgrading", "downgrade downgrading"),
    ("sub", "subscribe subscribing", "unsubscribe unsubscribing cancel-subscription"),
    ("lock", "lock locking", "unlock unlocking"), ("block", "block blocking ban", "unblock unblocking unban"),
    ("open", "open opening", "close closing"), ("start", "start starting resume", "stop stopping pause"),
    ("trade", "buy buying purchase", "sell selling"), ("port", "import importing", "export exporting"),
    ("load", "upload uploading", "download downloading"), ("crypt", "encrypt encrypting", "decrypt decrypting"),
    ("install", "install installing", "uninstall uninstalling"), ("conn", "connect connecting",
     "disconnect disconnecting"), ("vis", "show showing unhide", "hide hiding"),
    ("allow", "allow accept approve", "deny reject decline"), ("time", "before earlier", "after later"),
    ("extreme", "maximum max most highest largest biggest", "minimum min least lowest smallest"),
    ("price", "cheapest cheaper", "most-expensive pricier"), ("speed", "fastest faster", "slowest slower"),
    ("quality", "best better", "worst worse"), ("session", "log-in login sign-in", "log-out logout sign-out"),
    ("member", "join joining", "leave leaving"), ("follow", "follow", "unfollow"), ("mute", "mute", "unmute"),
    ("incl", "include including", "exclude excluding"), ("dir", "send sending", "receive receiving"),
    ("pub", "public", "private"), ("order", "first earliest", "last latest"), ("age", "newest newer", "oldest older"),
    ("side", "left", "right"), ("ns", "north", "south"), ("ew", "east", "west"), ("bool", "true yes", "false"),
    ("arch", "archive", "unarchive restore"), ("pin", "pin", "unpin"), ("merge", "merge", "split"),
]:
    _AXES.update({w: (_axis, 1) for w in _plus.split()} | {w: (_axis, -1) for w in _minus.split()})
_PHRASES = {"turn on": "turn-on", "switch on": "switch-on", "turn off": "turn-off", "switch off": "switch-off",
            "log in": "log-in", "sign in": "sign-in", "log out": "log-out", "sign out": "sign-out",
            "most expensive": "most-expensive", "two-factor authentication": "2fa", "two factor authentication": "2fa",
            "two-step verification": "2fa", "cancel my subscription": "cancel-subscription",
            "can't remember": "forgot", "cannot remember": "forgot", "don't remember": "forgot"}
_UNIT_WORDS = {
    "km": "km kms kilometer kilometers kilometre kilometres", "mile": "mi mile miles", "m": "meter meters metre metres",
    "cm": "cm centimeter centimeters", "mm": "mm millimeter millimeters", "ft": "ft foot feet", "inch": "inch inches",
    "kg": "kg kgs kilo kilos kilogram kilograms", "lb": "lb lbs", "pound": "pound pounds",
    "g": "gram grams", "oz": "oz ounce ounces",
    "gb": "gb gig gigs gigabyte gigabytes", "mb": "mb megabyte megabytes", "tb": "tb terabyte terabytes",
    "kb": "kb kilobyte kilobytes", "usd": "usd dollar dollars bucks $", "eur": "eur euro euros €", "gbp": "gbp £",
    "celsius": "celsius °c", "fahrenheit": "fahrenheit °f", "liter": "l liter liters litre litres",
    "gallon": "gallon gallons", "mph": "mph", "kph": "kph", "percent": "percent %",
    "hour": "h hr hrs hour hours hourly",
    "minute": "min mins minute minutes", "second": "sec secs seconds", "day": "day days daily",
    "week": "weeks weekly", "month": "months monthly", "year": "years yearly annual annually",
}
_TIME_UNITS = {"h", "hr", "hrs", "hour", "hours", "min", "mins", "minute", "minutes", "sec", "secs", "seconds", "day",
               "days", "weeks", "months", "years"}  # units only after a number ("opening hours" is not one)
_UNITS = {w: canon for canon, words in _UNIT_WORDS.items() for w in words.split()}
_MONTHS = _w("january february march april may june july august september october november december")
_MONTH_ABBR = {m[:3]: m for m in _MONTHS} | {"sept": "september"}
_DATE_WORDS = set(_MONTHS) | _ws("monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday "
                                 "tonight weekend")
_REL_DATE = re.compile(r"\b(this|next|last|previous|coming) (week|month|year|quarter|weekend|monday|tuesday|"
                       r"wednesday|thursday|friday|saturday|sunday)\b")
_ALL = _ws("all every each entire whole everything everyone everybody both")
_ONE = _ws("one 1 single specific particular individual")
_GAZETTEER = _ws("paris prague london berlin rome madrid lisbon vienna tokyo beijing delhi sydney toronto chicago "
                 "boston seattle dallas denver miami amsterdam dublin oslo stockholm warsaw athens cairo dubai mexico "
                 "canada france germany spain italy japan china india brazil australia russia usa uk ireland poland "
                 "portugal sweden norway austria greece egypt english french spanish german italian japanese chinese "
                 "portuguese russian android iphone ios windows macos linux chrome firefox safari visa mastercard "
                 "paypal amex")
_COMMON = _ws("i a an the how what why when where who which whose can could would should will shall do does did is "
              "are was were am my me we our you your please hi hello hey tell show give help is it if so and or but "
              "any there this that these those let lets ok okay thanks thank")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _time(h: str, mnt: str | None, ampm: str | None) -> str:
    hour = int(h) % 12 + (12 if ampm and ampm.startswith("p") else 0) if ampm else int(h)
    return f" {hour:02d}:{int(mnt or 0):02d} "


def _words_to_number(words: list[str]) -> int | None:
    total, cur, seen = 0, 0, False
    for w in words:
        if w in _WORDNUM:
            cur += _WORDNUM[w]
        elif w in _SCALES:
            cur = max(cur, 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total, cur = total + cur, 0
        elif w not in ("and", "a"):
            return None
        seen = True
    return total + cur if seen else None


def _num(m: re.Match[str]) -> str:
    """A run of number words as digits (a lone "a" and what does not parse stay as they are)."""
    if m.group(0).strip() == "a":
        return m.group(0)
    value = _words_to_number(m.group(0).split())
    return m.group(0) if value is None else str(value)


def _tens_units(m: re.Match[str]) -> str:
    return str(_TENS[m.group(1)] + _UNITS_0.index(m.group(2)))


def _tens_dash(m: re.Match[str]) -> str:
    return str(int(m.group(1)) + int(m.group(2))) if int(m.group(1)) % 10 == 0 and int(m.group(2)) < 10 \
        else m.group(0)


_NUMBER_WORDS = "|".join([*_WORDNUM, *_SCALES])
_NUMBER_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    *((re.compile(rf"(?<![\w-]){phrase}(?![\w-])"), token) for phrase, token in _PHRASES.items()),
    (re.compile(rf"\b({'|'.join(_TENS)})-({'|'.join(_UNITS_0[1:10])})\b"), _tens_units),
    (re.compile(r"(\d),(\d{3})\b"), r"\1\2"),
    (re.compile(r"(\d),(\d{3})\b"), r"\1\2"),  # again: 1,000,000
    (re.compile(r"\b(\d+(?:\.\d+)?)k\b"), lambda m: str(int(float(m.group(1)) * 1000))),
    (re.compile(r"\bnoon\b"), " 12:00 "),
    (re.compile(r"\bmidnight\b"), " 00:00 "),
    (re.compile(r"\b(\d{1,2})(?::(\d{2}))? ?([ap])\.?m\b\.?"), lambda m: _time(m.group(1), m.group(2), m.group(3))),
    (re.compile(r"\b(\d{1,2}):(\d{2})\b"), lambda m: _time(m.group(1), m.group(2), None)),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), r"ord:\1"),
    *((re.compile(rf"(?<![\w-]){w}(?![\w-])"), f"ord:{n}") for w, n in _ORDINALS.items()),
    (re.compile(rf"\b({'|'.join(_MONTHS)}) ord:(\d+)"), r"\1 \2"),
    (re.compile(rf"\bord:(\d+) (?:of )?({'|'.join(_MONTHS)})"), r"\1 \2"),
    (re.compile(r"\bhalf an? hour\b"), "30 minutes"),
    (re.compile(r"(?<![\w-])one(?! (?:hundred|thousand|million|billion))(?![\w-])"), "one_"),  # a quantifier
    (re.compile(rf"(?<![\w-])(?:a )?(?:(?:{_NUMBER_WORDS})(?: and | |-)?)+(?<![ -])(?![\w-])"), _num),
    (re.compile(r"\b(\d+)-(\d+)\b(?!\.)"), _tens_dash),
]
"""`normalize_numbers`' substitutions, compiled once, in the order they apply."""
_SPACES = re.compile(r"\s+")


def normalize_numbers(text: str) -> str:
    """Lowercase; number words, thousands separators, 'k', times and ordinals to one written form."""
    t = " " + text.lower().replace("–", "-") + " "
    for pattern, repl in _NUMBER_RULES:
        t = pattern.sub(repl, t)
    return _SPACES.sub(" ", t).strip()


@dataclass(frozen=True)
class Facts:
    """What a prompt pins down, as comparable sets."""

    negations: int
    actions: frozenset[tuple[str, int]]
    numbers: frozenset[str]
    versions: frozenset[str]
    dates: frozenset[str]
    units: frozenset[str]
    entities: frozenset[str]
    quantifier: frozenset[str]


def _entities(text: str) -> set[str]:
    found: set[str] = set()
    for sentence in re.split(r"[.?!;:]\s+|\n", text):
        for i, tok in enumerate(_WORD.findall(sentence)):
            low = tok.lower().strip("'-")
            if low in _GAZETTEER:
                found.add(low)
            elif len(tok) >= 2 and tok.isupper() and not tok.isdigit() and low not in _UNITS and low != "ok":
                found.add(low)  # an acronym, anywhere
            elif tok[0].isupper() and i > 0 and low not in _COMMON and low not in _UNITS \
                    and low not in _DATE_WORDS and low not in _MONTH_ABBR:
                found.add(low.removesuffix("'s"))  # capitalised, not opening the sentence
    return found


def extract(text: str) -> Facts:
    """The facts of one prompt (see the module docstring)."""
    norm = normalize_numbers(text)
    versions = set(re.findall(r"(?<![\d.])v?(\d+\.\d+(?:\.\d+)*)", norm))
    dates = {m.group(0) for m in _REL_DATE.finditer(norm)}
    rest = _REL_DATE.sub(" ", norm)
    dates |= set(re.findall(r"\b\d{4}-\d{2}-\d{2}\b", rest))
    rest = re.sub(r"(?<![\d.])v?\d+\.\d+(?:\.\d+)*|\b\d{4}-\d{2}-\d{2}\b", " ", rest)
    tokens = re.findall(r"ord:\d+|\d\d:\d\d|\d+(?![a-z])|[a-z0-9][a-z0-9'\-]*|[$€£%]|°[cf]", rest)
    numbers: set[str] = set()
    units: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok.isdigit() and 1900 <= int(tok) <= 2100:
            dates.add(tok)
        elif tok == "1":
            pass  # "1" is the quantifier "one" (see _ONE)
        elif tok.isdigit() or tok.startswith("ord:") or re.fullmatch(r"\d\d:\d\d", tok):
            numbers.add(str(int(tok)) if tok.isdigit() else tok)
        word = tok.rstrip("'s") if tok.endswith("'s") else tok
        if word in _DATE_WORDS:
            dates.add(word)
        elif word in _MONTH_ABBR and i > 0 and tokens[i - 1].isdigit():
            dates.add(_MONTH_ABBR[word])
        canon = _UNITS.get(word)
        after_number = i > 0 and tokens[i - 1].isdigit()
        if canon and (after_number or (len(word) > 2 and word not in _TIME_UNITS) or word in "$€£%"):
            units.add(canon)
    toks = set(tokens)
    return Facts(
        negations=len(_NEG.findall(norm)),
        actions=frozenset(_AXES[t] for t in toks if t in _AXES),
        numbers=frozenset(numbers), versions=frozenset(versions), dates=frozenset(dates),
        units=frozenset(units), entities=frozenset(_entities(text) - {"2fa"}),
        quantifier=frozenset(({"all"} if toks & _ALL else set()) | ({"one"} if toks & _ONE else set())),
    )


def _resolve_pounds(a: frozenset[str], b: frozenset[str]) -> tuple[set[str], set[str]]:
    """"pounds" is the currency next to "£" and the weight next to "lb"."""
    def fix(x: frozenset[str], other: frozenset[str]) -> set[str]:
        alias = "gbp" if "gbp" in other else "lb" if "lb" in other else "pound"
        return {alias if u == "pound" else u for u in x}
    return fix(a, b), fix(b, a)


def _same_entity(a: str, b: str) -> bool:
    return a == b or (min(len(a), len(b)) >= 6 and edit_distance(a, b) <= 1)


def _entity_diff(a: frozenset[str], b: frozenset[str]) -> tuple[set[str], set[str]]:
    only_a = {x for x in a if not any(_same_entity(x, y) for y in b)}
    only_b = {y for y in b if not any(_same_entity(x, y) for x in a)}
    return only_a, only_b


@dataclass(frozen=True)
class GuardDecision:
    """cosine, the penalties that fired (rule -> (cost, why)) and score = cosine - sum of costs."""

    cosine: float
    penalties: dict[str, tuple[float, str]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.cosine - sum(cost for cost, _ in self.penalties.values())

    @property
    def vetoed(self) -> bool:
        return any(cost >= HARD for cost, _ in self.penalties.values())

    def explain(self) -> str:
        parts = [f"{rule} -{cost:g} ({why})" for rule, (cost, why) in self.penalties.items()]
        return f"cosine {self.cosine:.3f}" + "".join(f"; {p}" for p in parts) + f" -> score {self.score:.3f}"


def _compare(rule: str, a: frozenset[str] | set[str], b: frozenset[str] | set[str], out: dict) -> None:
    if a == b:
        return
    if a and b:
        out[rule] = (HARD, f"{sorted(a)} vs {sorted(b)}")
    else:
        out[rule + "-one-sided"] = (_SOFT[rule], f"{sorted(a or b)} on one side only")


def guard(query: str, cached: str, cosine: float, facts: tuple[Facts, Facts] | None = None) -> GuardDecision:
    """Compare a new prompt with a cached one; `facts` may pass pre-extracted Facts (cached entries keep theirs)."""
    fa, fb = facts or (extract(query), extract(cached))
    out: dict[str, tuple[float, str]] = {}
    if fa.negations % 2 != fb.negations % 2:
        out["negation"] = (HARD, f"{fa.negations} vs {fb.negations} negation markers")
    axes = {ax for ax, _ in fa.actions} & {ax for ax, _ in fb.actions}
    clash = sorted(ax for ax in axes if {s for x, s in fa.actions if x == ax} != {s for x, s in fb.actions if x == ax})
    if clash:
        out["opposite-action"] = (HARD, f"opposite on {', '.join(clash)}")
    _compare("number", fa.numbers, fb.numbers, out)
    _compare("version", fa.versions, fb.versions, out)
    _compare("date", fa.dates, fb.dates, out)
    _compare("unit", *_resolve_pounds(fa.units, fb.units), out)
    only_a, only_b = _entity_diff(fa.entities, fb.entities)
    _compare("entity", only_a, only_b, out)
    if fa.quantifier != fb.quantifier:
        both = fa.quantifier and fb.quantifier
        out["scope"] = (HARD if both else _SOFT["scope"], f"{sorted(fa.quantifier)} vs {sorted(fb.quantifier)}")
    return GuardDecision(float(cosine), out)
