"""``POST /v1/completions``'s body (legacy text completions), on top of the shared sampling fields.

Contract: ``prompt`` is a string, a list of strings, a list of token ids or a list of such lists
(evaluation harnesses send ids), at most :data:`MAX_PROMPTS` prompts; each prompt gets ``n``
choices, indexed ``prompt * n + choice``. ``echo`` returns the prompt before the completion
(with ``logprobs``, the prompt's own token logprobs too; ``max_tokens: 0`` then scores the prompt
alone). ``suffix`` (fill-in-the-middle) is refused: no base this server runs is trained for it.
``best_of`` is accepted only equal to ``n`` (no server-side reranking). ``max_tokens`` defaults
to 16, as OpenAI's.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from server.api.sampling_fields import SamplingFields

MAX_PROMPTS = 16
MAX_COMPLETION_LOGPROBS = 20


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> CompletionRequest:
        if self.suffix is not None:
            raise ValueError("suffix: fill-in-the-middle is not supported by this server")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of: must equal n (this server does not rerank completions)")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 asks for nothing unless echo is true")
        count = len(self.prompts)
        if not 1 <= count <= MAX_PROMPTS:
            raise ValueError(f"prompt: holds 1 to {MAX_PROMPTS} prompts")
        if any(not p for p in self.prompts):
            raise ValueError("prompt: prompts must not be empty")
        return self

    @property
    def prompts(self) -> list[str] | list[list[int]]:
        """Every prompt, as text or as token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [p]  # one prompt of token ids
        return p  # type: ignore[return-value]  # a list of texts or of id lists

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens
