"""What a question asks for, and whether a quoted text contains it.

Unanswerable questions about this corpus are mostly on topic: every word can be in the corpus
while the thing asked for is not (a distance in kilometres, a deadline in days, a penalty, a
court, a forecast, today's list of parties). So the check is on the kind of answer: the
question's wording says what it wants, and a quote answers only when it contains something of
that kind. The flags and evidence here are general English patterns, not this corpus's wording;
the answerability model learns how much each is worth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.lexical import tokenize
from rag.states import STATE_WORD, states_named

_COUNT_WORD = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|"
               r"fifty|sixty|hundred|thousand|million|first|second|third|fourth|fifth|sixth|seventh|eighth|"
               r"ninth|tenth|twelfth|fifteenth|twentieth|thirtieth|fortieth|fiftieth|sixtieth|ninetieth|hundredth")
# "a year", "several days": a figure only next to a unit.
_NUMBER_WORD = rf"(?:{_COUNT_WORD}|a|an|several|few)"
_NUMBER = rf"(?:\d+(?:[.,]\d+)*|{_NUMBER_WORD})"

#: Unit families a question can ask a figure in, and the words that express each in a text.
UNITS = {
    "time": r"seconds?|minutes?|hours?|days?|weeks?|months?|years?|decades?|annual(?:ly)?|yearly|"
            r"daily|weekly|monthly",
    "distance": r"km|kilomet(?:re|er)s?|met(?:re|er)s?|miles?|altitudes?|heights?|feet",
    "mass": r"kg|kilograms?|grams?|tonnes?|tons?|pounds?",
    "money": r"dollars?|euros?|usd|\$|€|£|francs?|fees?|charges?|costs?|prices?",
    "dose": r"m?sv|millisieverts?|sieverts?|rems?|grays?",
    "share": r"per ?cent|percent|%|probability|percentage|fraction|ratio",
}
_FIGURE_IN = {family: re.compile(rf"{_NUMBER}(?:\s|-)+(?:\w+\s+){{0,2}}(?:{words})(?!\w)|(?:{words})\s*"
                                 rf"(?:of\s+)?\d", re.IGNORECASE)
              for family, words in UNITS.items()}
# What the question itself says about the unit it wants ("how long" asks for a time).
_UNIT_HINTS = {
    "time": r"how (?:long|soon|often)|within how|how many (?:\w+ )?(?:seconds|minutes|hours|days|weeks|"
            r"months|years)|what (?:period|deadline|time limit|interval|frequency)|by what date",
    "distance": r"how (?:far|high|low)|what (?:altitude|height|distance|radius|range)|how many "
                r"(?:square )?(?:kilomet|met|mile)|in kilomet|in met",
    "mass": r"how heavy|what (?:mass|weight)|how many (?:kilo|tonne|ton)",
    "money": r"how much (?:\w+ )?(?:money|does (?:it|the \w+) (?:cost|charge)|is the fee)|what (?:fee|price|"
             r"cost|charge|amount of money|budget)|(?<!in )\bcharge\b|\bfees?\b|\bcost\b",
    "dose": r"what (?:\w+ )?dose|dose limit|how much radiation",
    "share": r"what (?:percentage|share|proportion|probability|fraction|ratio)\b|what (?:collision )?"
             r"probability|what per ?cent|in per ?cent",
}
_UNIT_HINT = {family: re.compile(rf"\b(?:{hint})", re.IGNORECASE) for family, hint in _UNIT_HINTS.items()}

_FIGURE = re.compile(
    r"\bhow (?:many|much|long|far|high|low|soon|often|big|large|heavy|fast|frequently)\b|"
    r"\bwhat (?:\w+ )?(?:altitude|height|distance|percentage|number|amount|dose|limit|threshold|"
    r"probability|rate|fee|cost|price|mass|weight|size|duration|speed|age|minimum|maximum|radius|"
    r"figure|level|ratio|budget|sum|deadline|time limit)\b|\bwithin how\b|\bat what (?:\w+ )?"
    r"(?:altitude|height|distance|speed|rate|level|threshold)\b", re.IGNORECASE)
_DATE = re.compile(r"^\W*(?:and |so )?when\b|\b(?:what|which) (?:year|date|day|month|decade)\b|\bby when\b|"
                   r"\bsince when\b|\bdeadline\b|\bhow soon\b|\bby what date\b", re.IGNORECASE)
_PENALTY = re.compile(r"\b(?:penalt\w*|sanction\w*|fines?|fined|punish\w*|enforc\w*|prosecut\w*|"
                      r"criminal|imprison\w*|jail|prison)\b", re.IGNORECASE)
_CONSEQUENCE = re.compile(r"\bwhat (?:happens|would happen|is supposed to happen|will happen|are the "
                          r"consequences)\b|\bwhat if\b|\bconsequences?\b", re.IGNORECASE)
_COURT = re.compile(r"\b(?:courts?|tribunals?|judges?|icj|arbitrat\w*|adjudicat\w*|lawsuits?|sue|sued|"
                    r"litigat\w*)\b", re.IGNORECASE)
_JUDGEMENT = re.compile(
    r"^\W*(?:should (?:the|a|an|this|these|those|it|we|they|states|countries|there)\b(?!.*\b(?:do|"
    r"must|under|according)\b)|would\b|will\b|is it (?:likely|wise|fair|realistic|true|a good)|do you|in "
    r"your view)|\b(?:likely|unlikely|effective(?:ly|ness)?|outdated|obsolete|adequate(?:ly)?|fair|"
    r"unfair|wise|good idea|bad idea|succeed|realistic|worth|eventually|in the future|going to|"
    r"prospects?|chances?|predict\w*|forecast\w*|expect(?:ed)? to (?:become|change|happen)|"
    r"better|worse|best|worst|biggest|most important|strong enough|weak|loophole|too (?:short|long|weak|strict|"
    r"vague|narrow|broad|slow))\b|"
    # "Should mining be banned?" asks for a view; "Could it be banned?" asks what the texts allow.
    r"^\W*should\b.*\bbe (?:banned|allowed|permitted|legali[sz]ed|abolished|scrapped|reformed|strengthened|"
    r"rewritten)\b", re.IGNORECASE)
_PRESENT = re.compile(
    r"\bthe current\b|\b(?:currently|nowadays|now|today|recent(?:ly)?|latest|so far|to date|as of|these days|this year|"
    r"last year|at present|presently|up to now|in practice|actually|ever|yet)\b|"
    r"^\W*(?:has|have)\b|\b(?:has|have) (?:\w+ ){0,3}(?:ever|already|since)\b|"
    r"\bhow many (?:countries|states|nations|parties|members|signator\w*|objects|satellites)\b", re.IGNORECASE)
_STATES = re.compile(r"\b(?:which|what|list|name)(?: \w+)? (?:countries|states|nations|members|parties|"
                     r"governments|signator\w*)\b|\bwho (?:are|were|has|have) (?:the )?(?:members|parties|"
                     r"signed|ratified|joined)\b", re.IGNORECASE)
_ACTOR = re.compile(r"^\W*(?:and |so )?who(?:m|se)?\b|\b(?:to|by|from|with) whom\b|\bwho (?:\w+ )?"
                    r"(?:decides|checks|verifies|pays|is|are|must|should|can|may|has|have|will|"
                    r"represented|settles|certifies|coordinates)\b|\bwhich (?:\w+ )?(?:body|organ|"
                    r"organi[sz]ation|agency|authority|office|official|person|entity|institution|"
                    r"committee|country|state)\b", re.IGNORECASE)

# Sentences that contain each kind of answer.
_YEAR = re.compile(r"\b(?:1[89]\d\d|20\d\d)\b")
_MONTH = r"(?:january|february|march|april|may|june|july|august|september|october|november|december)"
_HAS_YEAR_OR_MONTH = re.compile(rf"{_YEAR.pattern}|\b{_MONTH}\b", re.IGNORECASE)
_HAS_TIME_WORD = re.compile(r"\b(?:before|after|prior to|upon|within|once|until|by the time|at the time|"
                            r"as soon as|promptly|immediately|date|period|following)\b", re.IGNORECASE)
# What a partial answer may deny is read more strictly than the model's evidence, whose "one",
# "before" or "may" (the verb) fit nearly every sentence: a figure in digits (a year is not one) or
# in the unit asked for, a calendar date, a time limit.
_CALENDAR_DAY = re.compile(rf"\b(?:[\w-]+ day of {_MONTH}|\d{{1,2}}(?:st|nd|rd|th)? {_MONTH}|"
                           rf"{_MONTH} \d{{1,2}}(?:\s*[-\u2013]\s*\d{{1,2}})?)\b", re.IGNORECASE)
# "the 1967 Outer Space Treaty": a year in a name; "A/68/189": a document's symbol.
_NAMED_YEAR = re.compile(rf"{_YEAR.pattern}\s+(?=[A-Z])")
_SYMBOL = re.compile(r"\S*/\S*")
_SETS_A_TIME = re.compile(r"\b(?:as soon as|promptly|immediately|without delay|in advance|prior to|no later than|"
                          r"at the (?:earliest|latest))\b", re.IGNORECASE)
_HAS_NUMBER = re.compile(rf"\b(?:\d+(?:[.,]\d+)*|{_COUNT_WORD}|once|twice|annual\w*|yearly|"
                         rf"half|majority|unanim\w*)\b", re.IGNORECASE)
# "article VIII", "paragraph 1 of principle 2", "resolution 1962 (XVIII)": references, not figures.
_CROSS_REFERENCE = re.compile(r"\b(?:articles?|paragraphs?|principles?|guidelines?|sections?|resolutions?|annex|"
                              r"chapter|part)\s+(?:[a-z]\.)?[0-9ivxlc]+(?:[.,][0-9]+)*(?:\s*\([a-z0-9]+\))*",
                              re.IGNORECASE)
_LIST_NUMBERING = re.compile(r"(?m)(?:^|\s)(?:\d+\.|\([a-z0-9]+\)|[a-z]\.\d+)(?=\s)", re.IGNORECASE)
_HAS_PENALTY = re.compile(r"\b(?:penalt\w*|sanction\w*|fines?|punish\w*|enforc\w*|prosecut\w*|liab\w*|"
                          r"compensat\w*|responsib\w*|suspen\w*|expel\w*|terminat\w*|reparation)\b", re.IGNORECASE)
_HAS_CONDITION = re.compile(r"\b(?:if|in the event|where|failing|unless|should \w+ fail|in case)\b", re.IGNORECASE)
_HAS_COURT = re.compile(r"\b(?:courts?|tribunals?|arbitra\w*|commission|settle\w*|disputes?|judicial|"
                        r"negotiat\w*|claims?)\b", re.IGNORECASE)
_HAS_STATES = re.compile(rf"\b(?:{STATE_WORD}|states parties|signatory|depositary)\b", re.IGNORECASE)
_HAS_ACTOR = re.compile(r"\b(?:state|states|secretary-general|commission|government|governments|"
                        r"authority|organi[sz]ation|chairman|party|parties|operator|committee|council|"
                        r"agency|office|depositar\w*|assembly)\b|[a-z] [A-Z][a-z]+", re.IGNORECASE)
_HAS_NORM = re.compile(r"\b(?:should|shall|must|encouraged|recommend\w*|may not|need to|ought)\b", re.IGNORECASE)

# The noun phrase a question asks about: "What documents have to be attached" -> "documents";
# "What does the treaty say about cyber attacks" -> "cyber attacks".
_FOCUS_AFTER_WH = re.compile(
    r"\b(?:what|which)\s+((?:[a-z'-]+\s+){0,3}?[a-z'-]+?)\s+(?:do|does|did|is|are|was|were|must|should|"
    r"shall|can|could|may|might|has|have|had|will|would|need|needs|apply|applies)\b", re.IGNORECASE)
_FOCUS_ABOUT = re.compile(r"\b(?:about|regarding|concerning|on the (?:subject|question|issue) of|address|"
                          r"addresses|deal with|cover|covers|mention|mentions|regulate|regulates|handle|"
                          r"handles)\s+((?:[a-z0-9'-]+\s*){1,6})", re.IGNORECASE)
#: Words that name no particular thing: they say the question wants a statement, not what about.
GENERIC = frozenset(tokenize(
    "thing things kind kinds type types sort role roles information details detail steps step measures "
    "measure rules rule obligations obligation duty duties requirements requirement provisions provision "
    "principle principles guideline guidelines article articles paragraph text treaty convention "
    "agreement declaration statement states state country countries party parties "
    "happen happens say says said mean means purpose way ways action actions activities activity "
    "matters matter issue issues conditions condition case cases circumstances situation point aspect "
    "aspects basis part parts term terms respect regard status guidance advice view one ones"))


@dataclass(frozen=True)
class Asked:
    """What a question asks for."""

    figure: bool  # a number: how many, what altitude, what fee
    unit: str | None  # the unit family of the figure, when the question implies one
    date: bool  # a date or a deadline
    penalty: bool  # a penalty, a sanction, enforcement
    consequence: bool  # what happens if ...
    court: bool  # a court, a tribunal, arbitration
    judgement: bool  # an opinion, an evaluation or a forecast
    present: bool  # the present state of affairs (who has signed so far, what is in orbit now)
    states: bool  # a list of states or members
    actor: bool  # who does something
    focus: tuple[str, ...]  # stemmed content words of what the question asks about

    @property
    def quantity(self) -> bool:
        """A figure or a date: answered less surely than other questions (a figure can be
        worded many ways), so judged against a "not found" threshold of its own."""
        return self.figure or self.date

    def wanted(self) -> str:
        """What the question asks for, in words for a user ("a figure in days")."""
        if self.present:
            return "the present state of affairs (it is a fixed set of texts, with no current data)"
        if self.judgement:
            return "an assessment or a forecast; it states rules, not opinions about them"
        if self.penalty:
            return "a penalty, sanction or means of enforcement"
        if self.court:
            return "a court or tribunal"
        if self.figure:
            return f"the figure asked for{f' (in {_UNIT_NAMES[self.unit]})' if self.unit else ''}"
        if self.date:
            return "the date or deadline asked for"
        if self.states:
            return STATES_WANTED
        return UNSPECIFIED

    def unstated(self, quotes: Sequence[str]) -> str:
        """What a partial answer says the corpus does not state: ``wanted()``, or UNSPECIFIED when
        a quote holds something of that kind (a figure in the unit asked for, or in digits when the
        question names no unit; a date or a time limit; the list of states asked for). An answer
        never denies what its own quotes may give: "How many years had the CSpO initiative been
        running?" quotes "the CSpO Initiative celebrates its ten-year anniversary"."""
        wanted = self.wanted()
        if self.present or self.judgement or self.penalty or self.court:
            return wanted  # named before a figure, and a text states none of these loosely
        if self.figure:
            given = any(_gives_figure(q, self.unit) for q in quotes)
        elif self.date:
            given = any(_YEAR.search(_NAMED_YEAR.sub(" ", q)) or _CALENDAR_DAY.search(q) or _SETS_A_TIME.search(q)
                        or has_figure(q, "time") for q in quotes)
        else:
            given = self.states and any(lists_states(q) for q in quotes)
        return UNSPECIFIED if given else wanted


#: What a partial answer lacks when the question asks for nothing the checks can name.
UNSPECIFIED = "exactly what the question asks"
#: What a partial answer lacks when the question asks which states and nothing named before that.
STATES_WANTED = "the list of states asked for"

_UNIT_NAMES = {"time": "units of time", "distance": "units of distance", "mass": "units of mass",
               "money": "money", "dose": "a radiation dose", "share": "a percentage or probability"}


def asked_for(question: str) -> Asked:
    """Read what ``question`` asks for from its wording."""
    figure = bool(_FIGURE.search(question))
    unit = next((family for family, hint in _UNIT_HINT.items() if hint.search(question)), None)
    return Asked(
        figure=figure or unit in ("distance", "mass", "dose", "share"),
        unit=unit,
        date=bool(_DATE.search(question)),
        penalty=bool(_PENALTY.search(question)),
        consequence=bool(_CONSEQUENCE.search(question)),
        court=bool(_COURT.search(question)),
        judgement=bool(_JUDGEMENT.search(question)),
        present=bool(_PRESENT.search(question)),
        states=bool(_STATES.search(question)),
        actor=bool(_ACTOR.search(question)),
        focus=focus_terms(question),
    )


#: "What does the OST say about cyber attacks?": the subject asked about, to the question's end.
_SAYS_ABOUT = re.compile(r"\b(?:say|says|said|state|states|provide|provides)\s+(?:anything\s+)?(?:about|on|regarding)"
                         r"\s+((?:[\w'-]+\s*){1,8})[?.!]*\s*$", re.IGNORECASE)


def subject_asked_about(question: str) -> str | None:
    """What a "What does X say about Y?" question asks about (Y, as written), or None."""
    match = _SAYS_ABOUT.search(question.strip())
    return match.group(1).strip() if match else None


def focus_terms(question: str) -> tuple[str, ...]:
    """Stemmed words of the thing the question asks about, generic words left out."""
    phrases = [m.group(1) for m in _FOCUS_AFTER_WH.finditer(question)]
    phrases += [m.group(1) for m in _FOCUS_ABOUT.finditer(question)]
    words: list[str] = []
    for phrase in phrases:
        words += [w for w in tokenize(phrase) if w not in GENERIC and not w.isdigit() and w not in words]
    return tuple(words)


def lists_states(text: str) -> bool:
    """Whether a text lists states (what a question asking which states wants)."""
    return states_named(text) >= 2


def has_figure(text: str, unit: str | None = None) -> bool:
    """A number in ``text`` (list numbering aside); with ``unit``, a number in that unit."""
    text = _without_references(text)
    if unit:
        return bool(_FIGURE_IN[unit].search(text))
    return bool(_HAS_NUMBER.search(text))


def _without_references(text: str) -> str:
    """``text`` without cross-references ("article VIII") and list numbering ("2.", "(b)")."""
    return _LIST_NUMBERING.sub(" ", _CROSS_REFERENCE.sub(" ", text))


def _gives_figure(text: str, unit: str | None) -> bool:
    """Whether ``text`` gives a figure a partial answer must not deny (see ``Asked.unstated``)."""
    text = _CALENDAR_DAY.sub(" ", _YEAR.sub(" ", _SYMBOL.sub(" ", text)))  # "the twenty-second day of April": a date
    if unit:
        return has_figure(text, unit)
    return bool(re.search(r"\d", _without_references(text)))


def evidence(asked: Asked, text: str, terms: set[str] | None = None) -> dict[str, float]:
    """For each thing ``asked`` wants, whether ``text`` contains it (1.0), lacks it (0.0), or the
    question does not want it (0.5): one feature a kind, so the model weighs each by itself.

    ``terms``: the text's stemmed tokens, when the caller has them already."""
    terms = set(tokenize(text)) if terms is None else terms

    def check(wanted: bool, found: bool) -> float:
        return (1.0 if found else 0.0) if wanted else 0.5

    focus_found = sum(w in terms for w in asked.focus) / len(asked.focus) if asked.focus else 1.0
    return {
        "has_figure": check(asked.figure, has_figure(text)),
        "has_unit": check(bool(asked.unit), bool(asked.unit) and has_figure(text, asked.unit)),
        "has_date": check(asked.date, bool(_HAS_YEAR_OR_MONTH.search(text) or _HAS_TIME_WORD.search(text))),
        "has_penalty": check(asked.penalty, bool(_HAS_PENALTY.search(text))),
        "has_condition": check(asked.consequence, bool(_HAS_CONDITION.search(text))),
        "has_court": check(asked.court, bool(_HAS_COURT.search(text))),
        "has_states": check(asked.states, bool(_HAS_STATES.search(text))),
        "has_actor": check(asked.actor, bool(_HAS_ACTOR.search(text))),
        "has_norm": check(asked.judgement, bool(_HAS_NORM.search(text))),
        "focus_found": focus_found,
        "focus_all_found": float(focus_found == 1.0),
    }


def flags(asked: Asked) -> dict[str, float]:
    """The question-side flags as numbers."""
    return {"asks_figure": float(asked.figure), "asks_unit": float(asked.unit is not None),
            "asks_date": float(asked.date), "asks_penalty": float(asked.penalty),
            "asks_consequence": float(asked.consequence), "asks_court": float(asked.court),
            "asks_judgement": float(asked.judgement), "asks_present": float(asked.present),
            "asks_states": float(asked.states), "asks_actor": float(asked.actor),
            "focus_words": float(len(asked.focus))}
