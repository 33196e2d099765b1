"""The one template that puts retrieved passages into a user turn, shared by chat and training.

Contract: :func:`grounded_question` writes the passages (numbered from 1, each with the last part
of its heading path, :func:`prompt_heading`: the section's own name) above the user's question,
with the instruction to answer from them and to say so when they do not hold the answer. The
server's retrieval (:mod:`server.knowledge.grounding`) and retrieval-aware training use this same
text, so an adapter learns exactly the prompts it is served with. Changing it changes what trained adapters expect.
"""

from __future__ import annotations

from collections.abc import Sequence

INSTRUCTION = (
    "Answer the question from the passages above when they hold the answer. If they do not, say that you do not know."
)
NOT_IN_PASSAGES = "I do not know: the passages I was given do not say."
"""What a retrieval-aware adapter is trained to answer when the passages lack the answer."""
HEADER = "Passages:\n\n"
"""How a grounded user turn begins."""


def prompt_heading(heading: str) -> str:
    """The part of a heading path (``"Handbook > Bike hire"``) a prompt shows: ``"Bike hire"``."""
    return heading.rsplit(" > ", 1)[-1]


def grounded_question(passages: Sequence[tuple[str, str]], question: str) -> str:
    """``passages`` as ``(heading, text)`` pairs, then the instruction and the question."""
    blocks = [
        f"[{i}] {prompt_heading(heading)}\n{text}" if heading else f"[{i}]\n{text}"
        for i, (heading, text) in enumerate(passages, 1)
    ]
    return HEADER + "\n\n".join(blocks) + f"\n\n{INSTRUCTION}\n\nQuestion: {question}"
