"""Customer questions that a tenant's documents may not answer, for teaching the adapter to abstain.

Contract: :data:`OUT_OF_SCOPE` is a fixed, tenant-neutral list of questions a customer of almost
any business might ask (gift cards, jobs, payment in cryptocurrency, ...), each with the word
stems that would show a document talks about it. :func:`unanswered` keeps the questions none of
whose stems occurs in the given text (as the start of a word, case-insensitive): questions the
documents do not answer, so "I do not know" is the right reply to them. A document that mentions
a topic at all keeps its question out, even where it might not answer it: a wrong abstention
sample would teach the adapter to refuse a question it can answer, which is worse than one
abstention sample fewer.

The list was written for the trainer, apart from the grounding evaluation set
(bench/grounding_eval/), whose unanswerable questions are about other topics.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

OUT_OF_SCOPE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Do you sell gift cards?", ("gift", "voucher")),
    ("Can I pay with Bitcoin or another cryptocurrency?", ("bitcoin", "crypto")),
    ("Do you have a loyalty programme?", ("loyalty", "reward", "points")),
    ("Are you hiring at the moment?", ("hiring", "job", "vacanc", "career", "recruit")),
    ("Do you offer franchise opportunities?", ("franchis",)),
    ("Is there a discount for students?", ("student",)),
    ("Do you give a discount to military veterans?", ("veteran", "military", "armed forces")),
    ("Can I buy shares in your company?", ("share", "invest", "stock")),
    ("Do you have a newsletter I can subscribe to?", ("newsletter", "subscri", "mailing")),
    ("Do you sponsor local sports teams?", ("sponsor",)),
    ("Which charity do you support?", ("charit", "donat")),
    ("Do you have a branch in Japan?", ("japan", "branch", "abroad")),
    ("Who designed your logo?", ("logo", "design")),
    ("Do you sell merchandise such as T-shirts or mugs?", ("merchandise", "shirt", "mug")),
    ("Is your company carbon neutral?", ("carbon", "neutral", "emission", "climate")),
    ("Do you accept payment in Swiss francs?", ("franc", "currenc")),
    ("Do you run an affiliate programme?", ("affiliate", "partner")),
    ("Do you offer apprenticeships?", ("apprentic", "trainee", "internship")),
    ("Do you have a podcast?", ("podcast",)),
    ("Do you sell your products on Amazon?", ("amazon", "marketplace")),
    ("Is there a referral bonus if I recommend you to a friend?", ("referr", "refer ", "recommend", "friend")),
    ("Do you have a YouTube channel?", ("youtube", "video", "channel")),
    ("Can I get a printed catalogue?", ("catalog", "brochure", "print")),
    ("Will you be at any trade fairs this year?", ("fair", "exhibition", "trade show")),
    ("Is your website available in Welsh?", ("welsh", "language", "translat")),
    ("Do you have a dress code for visitors?", ("dress",)),
    ("Do you offer a price match guarantee?", ("price match", "match", "guarantee")),
    ("Who is your chief executive?", ("chief", "executive", "ceo", "director")),
    ("Can I order by fax?", ("fax",)),
    ("Do you have a stand at the Christmas market?", ("christmas", "market")),
    ("Are you on Instagram?", ("instagram", "social media", "facebook")),
    ("Do you offer a lifetime membership?", ("lifetime", "membership", "member")),
    ("Do you print your own calendar?", ("calendar",)),
    ("Can I visit your warehouse?", ("warehouse",)),
    ("Is there a suggestion box?", ("suggestion", "feedback")),
    ("Do you publish an annual report?", ("annual report", "report")),
)


def _stem_pattern(stem: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(stem), re.IGNORECASE)


def unanswered(text: str, questions: Sequence[tuple[str, tuple[str, ...]]] = OUT_OF_SCOPE) -> list[str]:
    """The questions of ``questions`` none of whose stems starts a word of ``text``."""
    return [q for q, stems in questions if not any(_stem_pattern(s).search(text) for s in stems)]
