"""Deciding that the corpus does not answer a question, without guessing.

Similarity thresholds do not separate answerable from unanswerable questions here (plain
questions score lowest of all), so the checks look for evidence of absence instead:
a salient term of the question that the corpus never mentions, a question about the
present or the future (the corpus is a fixed set of texts), a request for an opinion or a
forecast, and a selected answer that lacks what the question asks for (a number for "how
many", a date for "when").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from rag.asked import subject_asked_about
from rag.corpus import Corpus
from rag.lexical import tokenize

_CURRENT_STATE = re.compile(
    r"\b(currently|at present|presently|right now|nowadays|these days|as of (?:today|now|\d{4})|"
    r"to date|so far|will (?:[\w'\u2019-]+ ){0,6}(?:take place|be held))\b",
    re.IGNORECASE,
)
#: Where a question or one of its sentences opens ("For a class debate: is ... worth the risk?").
_OPENS = r"(?:^|[.:;?!]\s+)\W*"
#: A question asking for a view or a forecast: the corpus holds the texts, not opinions of them
#: or predictions. Each pattern's ``cue`` (and ``more``) is quoted back. Kept narrow: on the
#: question files of ``training/`` they match 144 of the 243 opinion-or-prediction near misses
#: and no answerable question ("What should operators do ...?" asks what the texts recommend,
#: and "likely to cause harmful interference" is the Outer Space Treaty's own test).
_OPINION = tuple(re.compile(pattern, re.IGNORECASE) for pattern in (
    (r"\b(?P<cue>in your (?:honest |personal )?(?:view|opinion)|your (?:honest |personal )?(?:opinion|view|take|"
     r"thoughts|verdict)|do you (?:think|believe|reckon|feel)|what do you (?:think|make))\b"),
    (_OPENS + r"(?:is|are|was|were|would|isn't|aren't|wasn't)\b[^?]*?\b(?P<cue>a (?:good|bad|smart|wise|sensible) "
     r"(?:idea|move|forum|thing|way)|worth (?:the \w+|it)|too (?:risky|dangerous|vague|weak|strict|old|short|long|"
     r"slow|lax|broad|narrow)|(?:strong|strict|good|tough|clear|safe) enough|fair (?:to|on|for)(?! say)|"
     r"(?:basically |simply |just )?a failure|"
     # a verdict on a text ("Is the OST outdated?"), not a thing asked about ("obsolete satellites")
     r"(?:outdated|obsolete)(?=\s*(?:[?.!,;]|$|for|now|today|in|given|to)\b)|"
     r"still (?:relevant|adequate|workable|fit|useful|needed)|(?:just|merely|only|simply) symbolic)\b"),
    r"\b(?P<cue>how likely)\b(?! (?:may|must|can|should|is (?:it|an?|the) \w+ allowed)\b)",
    r"\b(?P<cue>is it likely)\b",
    r"\b(?:is|are) (?:\w+ ){1,4}(?P<cue>likely to)\b(?! (?:cause|interfere|be harmful|result)\b)",
    (r"\b(?P<cue>by (?:20[3-9]\d|21\d\d)|in the (?:next|coming) (?:\w+ )?(?:years?|decades?)|within (?:our|my|your) "
     r"lifetime|within the next (?:\w+ )?decades?)\b"),
    (_OPENS + r"(?P<cue>should)\b[^?]*?\b(?P<more>be (?:\w+ )?(?:banned|prohibited|outlawed|abolished|legal|illegal|"
     r"allowed|permitted|amended|changed|rewritten|reformed|scrapped|strengthened|made (?:legally )?binding|"
     r"turned into))\b"),
    (r"\b(?P<cue>(?:would it be|is it|which (?:is|works|one is|protects|does)) (?:\w+ )?(?:better|worse|"
     r"more effective))\b"),
    # a debate's verdict ("which side has the stronger case")
    (r"\b(?P<cue>(?:which side|which team|who) (?:has|makes|wins) (?:the )?(?:stronger|better|weaker|"
     r"more convincing|winning) (?:case|argument|position|side))\b"),
    # a verdict on a decision or an outcome ("Was it wise ...", "Was the Florence meeting a success?")
    r"\b(?:was|is|were|are|would) (?:it|that|this) (?:\w+ )?(?P<cue>wiser?|a (?:strategic |big |real )?mistake)\b",
    (r"\b(?:was|is|were|are) the \w+ (?:\w+ )?(?P<cue>(?:a |an )?(?:real |big |great )?(?:success|failure|"
     r"mistake))\b"),
    r"\b(?P<cue>an? (?:good|bad|fair|wise) (?:framework|deal|bargain|reason|solution))\b",
    # whether a text will suffice or how a body would rule: a forecast
    r"\b(?P<cue>(?:be|is|are) enough to (?:prevent|stop|expose|protect|restrain)|do enough to)\b",
    r"\b(?P<cue>likely to (?:side|rule|join|survive))\b",
))
#: Words that put a question in the present whatever it is about. Not a rule of their own: "today"
#: opens the fact sheet ("Today at Vandenberg ..."), and "now" many a question about the texts.
_TODAY = re.compile(r"\b(?:today|now)\b", re.IGNORECASE)
OFF_TOPIC_REASON = "the question seems to be outside space law and security, which is all the corpus covers"
_NUMBER = re.compile(r"\b\d+(?:[./-]\d+)*\b")
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9-]{1,9}s?\b")
_CAPITALISED_RUN = re.compile(r"\b[A-Z][a-z'’]+(?:\s+(?:of\s+(?:the\s+)?)?[A-Z][a-z'’]+)+\b")
_SAFE_ACRONYMS = frozenset({"UN", "US", "USA", "UK", "EU", "OST", "LTS", "NPS", "CSPO", "ASAT", "DA-ASAT"})
#: Nouns that make a name the name of an instrument ("Artemis Accords", "Hague Code").
_INSTRUMENT_NOUN = (r"(?:acts?|accords?|agreements?|treat(?:y|ies)|conventions?|regulations?|rules?|resolutions?|"
                    r"publications?|standards?|codes?|protocols?|charters?|principles|guidelines|laws?|"
                    r"directives?|statutes?|polic(?:y|ies)|frameworks?|manuals?|reports?|declarations?|"
                    r"memorand(?:um|a)|recommendations?|decisions?|strateg(?:y|ies)|arrangements?|pacts?|compacts?|"
                    r"doctrines?)")
_IS_INSTRUMENT = re.compile(rf"\b{_INSTRUMENT_NOUN}\b", re.IGNORECASE)
_PART_WORD = re.compile(r"\s*\b(?:Article|Principle|Guideline|Section|Paragraph|Part)s?\b\s*")
_PLACEHOLDER = re.compile(r"\b(?:Countr(?:y|ies)|States?|Operators?|Companies|Company|Firms?)"
                          r"(?:\s+(?:[A-Z]|and|or|,))+\b")
_PART_BEFORE = re.compile(r"\b(?:article|principle|guideline|section|paragraph|part|chapter|annex)s?\.?\s*$",
                          re.IGNORECASE)
_NAME_BEFORE = re.compile(r"\b(?:[A-Z][a-z]+|[A-Z]{2,}[\w-]*)[\s-]+$")  # "Cosmos 954", "ISO 24113"
_INSTRUMENT_BEFORE = re.compile(rf"\b{_INSTRUMENT_NOUN}(?:\s+(?:of|no\.?))?\s+$", re.IGNORECASE)
_INSTRUMENT_AFTER = re.compile(rf"\s+(?:[\w-]+\s+){{0,3}}{_INSTRUMENT_NOUN}\b", re.IGNORECASE)
# An acronym names a text when an instrument noun follows within three words ("the FCC's deorbit
# rule", "(SAR) convention", "IAEA-COPUOS Safety Framework") or precedes it ("rules of the FCC");
# anywhere else, the noun is often a verb of the question's own ("Who do I report GPS jamming to?").
_INSTRUMENT_AFTER_ACRONYM = re.compile(rf"(?:'s|\))?[\s-]*(?:[\w-]+\s+){{0,3}}{_INSTRUMENT_NOUN}\b", re.IGNORECASE)
_INSTRUMENT_BEFORE_ACRONYM = re.compile(rf"\b{_INSTRUMENT_NOUN}\s+of\s+(?:the\s+)?\(?$", re.IGNORECASE)
_MONTH_DATE = re.compile(r"\b(?:\d{1,2}\s+)?(?:January|February|March|April|May|June|July|August|"
                         r"September|October|November|December)\s+\d{4}\b")
_NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "fifteen", "twenty", "thirty", "forty", "fifty", "sixty", "hundred", "thousand",
                 "million", "first", "second", "third", "once", "twice", "annual", "annually", "daily",
                 "monthly", "yearly"]
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_ASKS_NUMBER = re.compile(r"\b(how (?:many|much|long|far|high|soon)|what (?:altitude|height|distance|"
                          r"percentage|number|amount|dose|limit))\b", re.IGNORECASE)
_ASKS_DATE = re.compile(r"^\W*when\b|\b(?:what|which) (?:year|date)\b", re.IGNORECASE)


#: A name of capitalised words, with small linking words inside ("Group of Governmental Experts").
_SPELLED_OUT = re.compile(r"\b[A-Z][\w-]*(?:\s+(?:(?:of|for|on|and|in|the)\s+)*[A-Z][\w-]*)+")
#: Fewest letters of an acronym read from a name's initials.
_MIN_INITIALS = 3


def spelled_out_acronyms(text: str) -> set[str]:
    """The acronyms the capitalised names in ``text`` spell, lower-cased: the initials of each
    run of three or more of a name's words ("Group of Governmental Experts on Transparency and
    Confidence-Building Measures" -> "gge", "tcbm", ...). The corpus mentions the "GGE" when
    it names the group in full."""
    acronyms = set()
    for name in _SPELLED_OUT.findall(text):
        initials = "".join(word[0] for word in re.split(r"[\s-]+", name) if word[:1].isupper()).lower()
        acronyms.update(initials[a:b] for a in range(len(initials))
                        for b in range(a + _MIN_INITIALS, len(initials) + 1))
    return acronyms


class Vocabulary:
    """Every word and number the corpus and its catalogue of titles and aliases contain, and
    the acronyms of the names they spell out."""

    def __init__(self, texts: Iterable[str]) -> None:
        joined = "\n".join(texts)
        lower = " ".join(joined.lower().split())
        #: The lower-cased texts, one string per source (never joined: at a million passages
        #: the corpus's is 300 MB, and a copy per question or per extension would double it).
        self._texts = (lower,) if lower else ()
        self._tokens = set(re.findall(r"[a-z0-9]+(?:[./-][a-z0-9]+)*", lower)) | spelled_out_acronyms(joined)

    def save(self, text_file: Path, tokens_file: Path) -> None:
        """Write what ``load`` reads back, so a large corpus is not scanned at every start."""
        text_file.write_text(" ".join(self._texts), encoding="utf-8")
        tokens_file.write_text(json.dumps(sorted(self._tokens)), encoding="utf-8")

    @classmethod
    def load(cls, text_file: Path, tokens_file: Path) -> Vocabulary:
        """The vocabulary ``save`` wrote."""
        vocabulary = cls.__new__(cls)
        text = text_file.read_text(encoding="utf-8")
        vocabulary._texts = (text,) if text else ()
        vocabulary._tokens = set(json.loads(tokens_file.read_text(encoding="utf-8")))
        return vocabulary

    def extended(self, texts: Iterable[str]) -> Vocabulary:
        """This vocabulary with the words of ``texts`` (each text searched on its own: a phrase
        never runs from one into the next)."""
        extra, combined = Vocabulary(texts), Vocabulary.__new__(Vocabulary)
        combined._texts = self._texts + extra._texts  # shared, not copied
        combined._tokens = self._tokens | extra._tokens
        return combined

    def mentions(self, term: str) -> bool:
        term = " ".join(term.lower().split())
        # A word or phrase starting at a word boundary; "A/68/189" in the corpus mentions "68/189".
        return term in self._tokens or any(
            text.startswith(term) or f" {term}" in text or f"/{term}" in text for text in self._texts)


def _normalise_names(question: str) -> str:
    """The question with what makes an ordinary word look like a name taken out: capitals at
    the start of each sentence, possessive endings, and placeholder parties ("Country B")."""
    question = re.sub(r"(?:^|(?<=[.?!:;]\s))\W*\w+", lambda m: m.group(0).lower(), question)
    question = re.sub(r"(\w)['’]s?\b", r"\1", question)
    question = _PLACEHOLDER.sub(" ", question)
    return _MONTH_DATE.sub(" ", question)  # a date in a scenario is part of the story


def name_terms(question: str) -> tuple[list[str], list[str]]:
    """(instrument terms, other names) of ``question``: terms whose absence from the corpus
    means it cannot answer.

    Instrument terms name a text: an identifier with a number ("ISO 24113", "77/41", "Act
    2018"), a capitalised name with an instrument noun ("Artemis Accords"), an acronym next to
    one ("the FCC rule"). When the corpus lacks one, it does not hold the text asked about.
    Other names (people, places, bodies, bare numbers) may be a question's own story ("a
    capsule lands in Kenya"), so their absence is only evidence. Pass the question with the
    corpus's document names removed."""
    question = _normalise_names(question)
    instruments: list[str] = []
    others: list[str] = []
    for match in _NUMBER.finditer(question):
        before, after = question[max(0, match.start() - 40):match.start()], question[match.end():]
        if _PART_BEFORE.search(before):
            continue  # "Article 22": a part reference, which retrieval resolves
        identifier = (not match.group(0).isdigit()  # 77/41, 8719.14
                      or _NAME_BEFORE.search(before) or _INSTRUMENT_BEFORE.search(before)
                      or _INSTRUMENT_AFTER.match(after))
        (instruments if identifier else others).append(match.group(0))
    for acronym in _ACRONYM.findall(question):
        if acronym.upper() in _SAFE_ACRONYMS or acronym.upper().rstrip("S") in _SAFE_ACRONYMS:
            continue
        at = question.find(acronym)
        before, after = question[max(0, at - 40):at], question[at + len(acronym):]
        named = (_INSTRUMENT_AFTER_ACRONYM.match(after) or _INSTRUMENT_BEFORE_ACRONYM.search(before)
                 or re.match(r"[\s-]+\d", after))
        (instruments if named else others).append(acronym)
    for run in _CAPITALISED_RUN.findall(question):
        name = _PART_WORD.sub(" ", run).strip()
        if not name:
            continue
        (instruments if _IS_INSTRUMENT.search(name) else others).append(name)
    return instruments, others


def unanswerable_reason(question: str, vocabulary: Vocabulary) -> str | None:
    """Why the corpus cannot answer ``question`` before any passage is read, or None."""
    letters = [ch for ch in question if ch.isalpha()]
    if sum(ch.isascii() for ch in letters) < 0.5 * len(letters):
        return "the corpus is in English; please ask the question in English"
    if not re.search(r"[A-Za-z]{3,}", question):
        return "the question has no words the corpus could be searched for"
    match = _CURRENT_STATE.search(question)
    if match:
        return _present_reason(match.group(0))
    match = next(filter(None, (pattern.search(question) for pattern in _OPINION)), None)
    if match:
        words = " \u2026 ".join(filter(None, (match.group("cue"), match.groupdict().get("more"))))
        return (f"the question asks for an opinion or a forecast (\u201c{words}\u201d), which the "
                "corpus does not give: it holds the texts themselves")
    missing = [t for t in name_terms(question)[0] if not vocabulary.mentions(t)]
    if missing:
        term = missing[0] if len(missing[0]) <= 60 else missing[0][:57] + "..."
        return f"the corpus does not mention \u201c{term}\u201d"
    return None


def unmentioned_reason(question: str, doc_ids: Sequence[str], corpus: Corpus) -> str | None:
    """The most precise "not found" for a question that names one document and asks what it says
    about a subject none of whose words that document holds ("What does the Florence statement
    say about China?"): the document's silence, or None."""
    subject = subject_asked_about(question)
    if subject is None or len(doc_ids) != 1:
        return None
    words = set(tokenize(subject))
    doc = corpus.get(doc_ids[0])
    if not words or words & set(tokenize(corpus.text(doc))):
        return None
    return f"no passage of the {doc.citation_name} mentions \u201c{subject}\u201d"


def off_topic_reason(question: str) -> str:
    """Why a question the topic checks find outside the corpus is refused. One about today ("How
    many satellites are in orbit today?") asks about the present, which the corpus never states,
    whether or not it is about space; any other is refused for its subject."""
    match = _TODAY.search(question)  # the rules have refused the other present-tense words
    return _present_reason(match.group(0)) if match else OFF_TOPIC_REASON


def _present_reason(words: str) -> str:
    return (f"the question asks about the present or the future (\u201c{words}\u201d), "
            "and the corpus is a fixed set of texts with no current data")


def _has_number(text: str) -> bool:
    lower = text.lower()
    return bool(re.search(r"\d", text)) or any(re.search(rf"\b{w}\b", lower) for w in _NUMBER_WORDS)


def _has_date(text: str) -> bool:
    lower = text.lower()
    return (bool(re.search(r"\b(?:1[89]|20)\d\d\b", text)) or any(m in lower for m in _MONTHS)
            or bool(re.search(r"\b(before|after|prior to|upon|within|once)\b", lower)))


def expected_answer_type(question: str) -> str | None:
    """"number" or "date" when the question asks for one, else None."""
    if _ASKS_NUMBER.search(question):
        return "number"
    if _ASKS_DATE.search(question):
        return "date"
    return None


def has_answer_type(text: str, answer_type: str | None) -> bool:
    text = re.sub(r"(?m)^\s*(?:\d+\.|\([a-z0-9]+\))\s+", "", text)  # list numbering is no answer
    if answer_type == "number":
        return _has_number(text)
    if answer_type == "date":
        return _has_date(text)
    return True


def lacks_answer_type(question: str, answer_texts: list[str]) -> str | None:
    """When the question asks for a number or a date that no selected sentence contains."""
    wanted = expected_answer_type(question)
    if wanted and not has_answer_type(" ".join(answer_texts), wanted):
        return f"no passage gives the {'figure' if wanted == 'number' else 'date'} the question asks for"
    return None
