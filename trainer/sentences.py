"""Prose -> sentences -> a shallow parse (subject, verb, predicates), enough to ask questions.

No language model and no tagger: a sentence is cut at its first finite verb from a fixed list
(:data:`VERBS`). What comes before is the subject (a fronted ``On Sundays and Mondays`` is set
aside); what follows is split into predicates at ``and``/``, and`` before another listed verb
(``costs 45 pounds and takes one working day`` -> two predicates). A line without a listed verb
(a table row, a list item) becomes a clause with verb ``is`` whose subject is the text before
its first ``:``, ``;`` or dash.

Sentences longer than :data:`MAX_SENTENCE` characters are cut at spaces, so no pattern ever
runs on unbounded text. Also the small grammar helpers question templates need: :func:`base_form` (``takes``
-> ``take``,
``hired`` -> ``hire``, ``sold`` -> ``sell``), :func:`singular` and :func:`split_sentences`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SENTENCE = 500
_ABBREVIATIONS = (
    "e.g.",
    "i.e.",
    "etc.",
    "Mr.",
    "Mrs.",
    "Ms.",
    "Dr.",
    "St.",
    "No.",
    "approx.",
    "incl.",
    "vs.",
    "Co.",
    "Ltd.",
    "Inc.",
    "Corp.",
    "Jr.",
    "Sr.",
    "Ave.",
    "Rd.",
    "Mt.",
    "Tel.",
    "a.m.",
    "p.m.",
    "ca.",
    "Nr.",
)
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(])")
_AUX = {"is", "are", "was", "were", "can", "will", "may", "must", "should", "could", "might", "has", "have"}
_IRREGULAR = {
    "is": "be",
    "are": "be",
    "was": "be",
    "were": "be",
    "has": "have",
    "sold": "sell",
    "done": "do",
    "taken": "take",
    "given": "give",
    "made": "make",
    "held": "hold",
    "kept": "keep",
    "paid": "pay",
    "run": "run",
    "bought": "buy",
    "sent": "send",
    "brought": "bring",
    "shown": "show",
    "seen": "see",
    "told": "tell",
    "written": "write",
    "found": "find",
    "left": "leave",
    "built": "build",
    "spent": "spend",
    "goes": "go",
    "does": "do",
    "opened": "open",
    "offered": "offer",
    "delivered": "deliver",
    "covered": "cover",
    "welcomed": "welcome",
    "ordered": "order",
    "cancelled": "cancel",
    "refunded": "refund",
    "serviced": "service",
}
_PLURALS = {
    "loaves": "loaf",
    "leaves": "leaf",
    "shelves": "shelf",
    "halves": "half",
    "knives": "knife",
    "lives": "life",
    "wives": "wife",
    "men": "man",
    "women": "woman",
    "children": "child",
    "people": "person",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
    "geese": "goose",
    "series": "series",
    "species": "species",
}
_DETERMINERS = {"a", "an", "the", "our", "your", "every", "each", "all", "this", "these", "its", "their", "any", "my"}
_PREPOSITIONS = {"on", "in", "at", "during", "from", "after", "before", "for", "since", "until", "by", "with"}
VERBS = _AUX | {
    "costs",
    "cost",
    "takes",
    "take",
    "includes",
    "include",
    "comes",
    "come",
    "gets",
    "get",
    "gives",
    "give",
    "offers",
    "offer",
    "runs",
    "run",
    "opens",
    "open",
    "closes",
    "close",
    "accepts",
    "accept",
    "sells",
    "sell",
    "provides",
    "provide",
    "lasts",
    "last",
    "starts",
    "start",
    "needs",
    "need",
    "charges",
    "charge",
    "park",
    "parks",
    "answers",
    "answer",
    "covers",
    "cover",
    "requires",
    "require",
    "contains",
    "contain",
    "delivers",
    "deliver",
    "serves",
    "serve",
    "stocks",
    "stock",
    "ships",
    "ship",
    "works",
    "work",
    "lives",
    "live",
    "sits",
    "sit",
    "stands",
    "stand",
    "earn",
    "earns",
    "pay",
    "pays",
    "welcomes",
    "welcome",
    "helps",
    "help",
    "repairs",
    "repair",
    "uses",
    "use",
    "holds",
    "hold",
    # common verbs of handbooks beyond the first ones (a parse without a verb asks about the whole
    # sentence as its subject: "What about the download link for an export stays valid?")
    *("receives", "receive", "stays", "stay", "saves", "save", "leaves", "leave", "explains", "explain"),
    *("goes", "go", "allows", "allow", "remains", "remain", "applies", "apply", "becomes", "become"),
    *("sends", "send", "expires", "expire", "keeps", "keep", "means", "mean", "depends", "depend"),
    *("arrives", "arrive", "ends", "end", "begins", "begin", "finishes", "finish", "meets", "meet"),
    *("teaches", "teach", "hosts", "host", "supplies", "supply", "handles", "handle"),
}


@dataclass(frozen=True)
class Clause:
    """A sentence cut into subject and predicates (see the module doc).

    ``subject`` keeps its words as written except a sentence-initial capital on a common word;
    ``head`` is the subject without its determiner and without a trailing ``of <amount>``;
    ``predicates`` are ``(verb, rest)`` pairs, ``rest`` without the final punctuation.
    """

    sentence: str
    fronted: str
    subject: str
    head: str
    plural: bool
    predicates: tuple[tuple[str, str], ...]


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; each line is split on its own, abbreviations are not sentence ends."""
    sentences: list[str] = []
    for line in text.splitlines():
        protected = line
        for abbreviation in _ABBREVIATIONS:
            protected = protected.replace(abbreviation, abbreviation.replace(".", "\x00"))
        for part in _SPLIT.split(protected):
            part = part.replace("\x00", ".").strip()
            if len(part.split()) >= 2:
                sentences += _chunks(part)
    return sentences


def _chunks(sentence: str) -> list[str]:
    """A run-on "sentence" cut into pieces of at most :data:`MAX_SENTENCE` characters at spaces
    (hard cuts inside an overlong word), which also bounds the work of every pattern on it."""
    pieces: list[str] = []
    while len(sentence) > MAX_SENTENCE:
        cut = sentence.rfind(" ", 0, MAX_SENTENCE)
        cut = cut if cut > 0 else MAX_SENTENCE
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    return [*pieces, sentence] if sentence else pieces


def parse(sentence: str, proper: set[str]) -> Clause:
    """The shallow parse of ``sentence``; ``proper`` holds words known to be capitalised names."""
    body = re.sub(r"^(?:yes|no)\b[,.!]?\s*", "", sentence.rstrip(".!?;: "), flags=re.IGNORECASE)
    words = body.split()
    at = next((i for i in range(1, len(words)) if _is_verb(words, i)), None)
    if at is None:
        parts = re.split(r"\s*(?:[:;]|\s[-\u2013\u2014]\s)\s*", body, maxsplit=1)
        subject, rest = (parts[0], parts[1]) if len(parts) == 2 else (body, "")
        return _clause(sentence, "", subject, [("is", rest)], proper)
    subject_words = words[:at]
    fronted = ""
    if subject_words[0].lower() in _PREPOSITIONS:
        cut = max((i for i, w in enumerate(subject_words) if i > 0 and w.lower() in _DETERMINERS), default=None)
        cut = cut if cut is not None else len(subject_words) - 1
        fronted, subject_words = " ".join(subject_words[:cut]).rstrip(","), subject_words[cut:]
    singular_verb = words[at].lower() in ("is", "was", "has") or words[at].lower().endswith("s")
    predicates: list[tuple[str, str]] = []
    start = at
    for i in range(at + 1, len(words) + 1):
        second = i < len(words) and words[i - 1].lower() == "and" and words[i].lower() in VERBS
        if second and (words[i].lower() in _AUX or words[i].lower().endswith("s") == singular_verb):
            predicates.append((words[start].lower().strip(","), " ".join(words[start + 1 : i - 1]).strip(" ,")))
            start = i
    predicates.append((words[start].lower().strip(","), " ".join(words[start + 1 :]).strip(" ,")))
    return _clause(sentence, fronted, " ".join(subject_words), predicates, proper)


def _is_verb(words: list[str], i: int) -> bool:
    """Whether ``words[i]`` is the finite verb: listed, not right after a determiner, and (for a
    word that is also a noun, like ``repairs``) not followed by another listed verb."""
    word = words[i].lower().strip(",")
    if word not in VERBS or (word not in _AUX and words[i - 1].lower() in _DETERMINERS):
        return False
    following = words[i + 1].lower().strip(",") if i + 1 < len(words) else ""
    return word in _AUX or following not in VERBS


def _clause(sentence: str, fronted: str, subject: str, predicates: list[tuple[str, str]], proper: set[str]) -> Clause:
    words = subject.split()
    if words and words[0] not in proper and not (len(words) > 1 and words[1][:1].isupper()):
        words[0] = words[0].lower()
    if len(words) > 1 and words[0].lower() in ("all", "both") and words[1].lower() in _DETERMINERS:
        words = words[1:]  # "all our breads" -> "our breads"
    subject = " ".join(words)
    head_words = words[1:] if len(words) > 1 and words[0].lower() in _DETERMINERS else words
    head = re.sub(r"\s+of\s+[\d£$€].*$", "", " ".join(head_words))
    verb = predicates[0][0]
    if verb in ("is", "was", "has") or (verb not in _AUX and verb.endswith("s")):
        plural = False
    elif verb in ("are", "were", "have") or verb not in _AUX:
        plural = True
    else:
        plural = head.endswith("s") and not head.endswith("ss")
    return Clause(sentence, fronted, subject, head, plural, tuple(predicates))


def base_form(verb: str) -> str:
    """The bare infinitive of a third-person or past-participle form (heuristic, see module doc)."""
    verb = verb.lower()
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    if verb.endswith(("sses", "shes", "ches", "xes", "zes")):
        return verb[:-2]
    if verb.endswith("ied"):
        return verb[:-3] + "y"
    if verb.endswith("ed"):
        stem = verb[:-2]
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
            return stem[:-1]
        if re.fullmatch(r"[^aeiou]*[aeiou][^aeiouwxy]", stem) or stem.endswith(("u", "v", "c", "at", "iz", "ur")):
            return stem + "e"
        return stem
    if verb.endswith("s") and not verb.endswith("ss"):
        return verb[:-1]
    return verb


def singular(noun_phrase: str) -> str:
    """``hybrid bikes`` -> ``hybrid bike``; ``puncture repairs`` -> ``puncture repair`` (last word only)."""
    match = re.search(r" (?:for|of|with|in|on) ", noun_phrase)
    head, sep, tail = (
        (noun_phrase[: match.start()], match.group(), noun_phrase[match.end() :]) if match else (noun_phrase, "", "")
    )
    words = head.split()
    if not words:
        return noun_phrase
    last = words[-1]
    if last.lower() in _PLURALS:
        last = _PLURALS[last.lower()]
    elif last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("ches", "shes", "sses", "xes")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")):
        last = last[:-1]
    return " ".join([*words[:-1], last]) + sep + tail


def article(noun_phrase: str) -> str:
    """``a``/``an`` + ``noun_phrase``."""
    return f"{'an' if noun_phrase[:1].lower() in 'aeiou' else 'a'} {noun_phrase}"
