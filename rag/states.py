"""The names of states in a question, and the question without them.

The question model judges how a question is worded, not what it is about. Trained on
questions that named one state mostly in near misses (Russia's 2021 test: "how many pieces
of debris"), it learned the name: a liability question about a Russian satellite was refused
while the same question about a French one was answered. It reads the question with every
state's name replaced, so no state makes a question sound unanswerable.
"""

from __future__ import annotations

import re

#: (names, adjective) of the states questions about space name most: spacefaring states, the
#: parties to the Florence statement, and others often in the news about space.
STATES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("Algeria",), "Algerian"), (("Argentina",), "Argentine|Argentinian"), (("Australia",), "Australian"),
    (("Austria",), "Austrian"), (("Azerbaijan",), "Azerbaijani"), (("Bangladesh",), "Bangladeshi"),
    (("Belarus",), "Belarusian"), (("Belgium",), "Belgian"), (("Bolivia",), "Bolivian"),
    (("Brazil",), "Brazilian"), (("Bulgaria",), "Bulgarian"), (("Canada",), "Canadian"),
    (("Chile",), "Chilean"), (("China", "People's Republic of China", "PRC"), "Chinese"),
    (("Colombia",), "Colombian"), (("Czech Republic", "Czechia"), "Czech"), (("Denmark",), "Danish"),
    (("Egypt",), "Egyptian"), (("Ethiopia",), "Ethiopian"), (("Finland",), "Finnish"), (("France",), "French"),
    (("Germany",), "German"), (("Ghana",), "Ghanaian"), (("Greece",), "Greek"), (("Hungary",), "Hungarian"),
    (("India",), "Indian"), (("Indonesia",), "Indonesian"), (("Iran",), "Iranian"), (("Iraq",), "Iraqi"),
    (("Ireland",), "Irish"), (("Israel",), "Israeli"), (("Italy",), "Italian"), (("Japan",), "Japanese"),
    (("Kazakhstan",), "Kazakh|Kazakhstani"), (("Kenya",), "Kenyan"), (("Luxembourg",), "Luxembourgish"),
    (("Malaysia",), "Malaysian"), (("Mexico",), "Mexican"), (("Morocco",), "Moroccan"),
    (("Netherlands", "Holland"), "Dutch"), (("New Zealand",), "New Zealander"),
    (("Nigeria",), "Nigerian"), (("North Korea", "DPRK"), "North Korean"), (("Norway",), "Norwegian"),
    (("Pakistan",), "Pakistani"), (("Peru",), "Peruvian"), (("Philippines",), "Philippine|Filipino"),
    (("Poland",), "Polish"), (("Portugal",), "Portuguese"), (("Qatar",), "Qatari"), (("Romania",), "Romanian"),
    (("Russia", "Russian Federation"), "Russian"), (("Rwanda",), "Rwandan"), (("Saudi Arabia",), "Saudi"),
    (("Singapore",), "Singaporean"), (("South Africa",), "South African"),
    (("South Korea", "Republic of Korea", "Korea"), "South Korean|Korean"),
    (("Soviet Union", "USSR"), "Soviet"), (("Spain",), "Spanish"), (("Sweden",), "Swedish"),
    (("Switzerland",), "Swiss"), (("Taiwan",), "Taiwanese"), (("Thailand",), "Thai"), (("Turkey", "Türkiye"), "Turkish"),
    (("Ukraine",), "Ukrainian"), (("United Arab Emirates", "UAE", "Emirates"), "Emirati"),
    (("United Kingdom", "UK", "Britain", "Great Britain"), "British"),
    (("United States of America", "United States", "USA", "US", "America"), "American"), (("Vietnam",), "Vietnamese"),
)

#: Names written in capitals ("US", "UK") match in capitals only: "us" is a pronoun.
_ABBREVIATION = re.compile(r"[A-Z]{2,}")


def _alternation(names: list[str]) -> str:
    # Longest first, so "United States of America" wins over "United States" and "America".
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))


_names = [n for names, _ in STATES for n in names]
_adjectives = [a for _, adjectives in STATES for a in adjectives.split("|")]
_spelled = [n for n in _names if not _ABBREVIATION.fullmatch(n)]
#: Any state's name or adjective, in any case (for patterns that look for states in a text).
STATE_WORD = _alternation(_spelled + _adjectives)
_NOUN = re.compile(rf"\b(?:the\s+)?(?:(?i:{_alternation(_spelled)})|"
                   rf"{_alternation([n for n in _names if _ABBREVIATION.fullmatch(n)])})\b('s)?")
_ADJECTIVE = re.compile(rf"\b(?i:{_alternation(_adjectives)})\b")


def without_state_names(text: str) -> str:
    """``text`` with every state's name read as "a State" and its adjective as "foreign"
    ("Can China build a base on the Moon?" -> "Can a State build a base on the Moon?")."""
    named = _NOUN.sub(lambda m: "a State" + (m.group(1) or ""), text)
    return _ADJECTIVE.sub("foreign", named)


def states_named(text: str) -> int:
    """How many names of states ``text`` holds ("Australia, Canada, France ..." -> 10)."""
    return len(_NOUN.findall(text))
