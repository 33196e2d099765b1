"""Incremental detokenization with stop strings, shared by streaming and non-streaming replies.

:meth:`IncrementalText.push` takes one token and returns the text that is now safe to show:
text is held back while it ends in an incomplete UTF-8 sequence or could be the start of a stop
string. A non-streaming reply is the concatenation of the same pieces, so greedy stream text and
greedy non-stream text are equal by construction.
"""

from __future__ import annotations


class IncrementalText:
    """Turns generated token ids into text pieces, honouring stop strings."""

    def __init__(self, tokenizer, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._ids: list[int] = []
        self._emitted = 0
        self.stopped = False
        """True once a stop string matched; no further text is produced."""

    def _decode(self) -> str:
        return self._tokenizer.decode(self._ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add a token; return the newly safe text (possibly empty)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        text = self._decode()
        if self._stop:
            # A stop string can only complete in the not-yet-emitted tail (plus overlap).
            start = max(0, self._emitted - max(len(s) for s in self._stop))
            hits = [i for i in (text.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                self.stopped = True
                return self._take(text, min(hits))
        if text.endswith("\ufffd"):
            return ""  # an incomplete multi-byte character; wait for the next token
        return self._take(text, len(text) - self._held_prefix(text))

    def flush(self) -> str:
        """The text still held back, when generation ends for another reason than a stop string."""
        if self.stopped:
            return ""
        return self._take(self._decode().rstrip("\ufffd"), None)

    def _held_prefix(self, text: str) -> int:
        """Length of the longest tail of ``text`` that starts some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _take(self, text: str, end: int | None) -> str:
        end = len(text) if end is None else end
        if end <= self._emitted:
            return ""
        piece = text[self._emitted : end]
        self._emitted = end
        return piece
