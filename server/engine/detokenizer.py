"""Incremental detokenization with stop strings, shared by streaming and non-streaming replies.

:meth:`IncrementalText.push` takes one token and returns the text that is now safe to show:
text is held back while it ends in an incomplete UTF-8 sequence or could be the start of a stop
string. A non-streaming reply is the concatenation of the same pieces, so greedy stream text and
greedy non-stream text are equal by construction.

Contract:

- the pieces of :meth:`~IncrementalText.push` and :meth:`~IncrementalText.flush` concatenate to
  ``tokenizer.decode(ids, skip_special_tokens=True)`` of all the ids pushed (less trailing
  U+FFFD at flush), up to the first stop string when one matched;
- a stop string, even one spanning several tokens, sets ``stopped`` on the token that completes
  it, and neither it nor anything after it is ever returned;
- a step costs O(window), not O(answer): only a sliding window of recent ids is decoded (the
  standard two-offset technique). ``prefix`` marks the ids already turned into text that the
  window keeps as context, ``read`` the end of those ids. A push decodes ``ids[prefix:]`` and
  ``ids[prefix:read]``; what the first adds to the second is the new text. Unless that text ends
  in U+FFFD (an incomplete character: wait for the next token) the offsets move up
  (``prefix = read``, ``read = len(ids)``), so the window is the last token or two, longer only
  while a character spans tokens (or the model keeps producing invalid bytes). The text kept for
  stop strings is the part not yet shown plus as many shown characters as the longest stop.
"""

from __future__ import annotations

from typing import Protocol

_INCOMPLETE = "\ufffd"


class TokenDecoder(Protocol):
    """What :class:`IncrementalText` needs of a tokenizer (a Hugging Face one has it)."""

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str | list[str]: ...


class IncrementalText:
    """Turns generated token ids into text pieces, honouring stop strings."""

    def __init__(self, tokenizer: TokenDecoder, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._overlap = max((len(s) for s in self._stop), default=0)
        self._window: list[int] = []
        """The ids from the prefix offset on (older ids are dropped)."""
        self._read = 0
        """How many ids of the window are in ``_text`` already."""
        self._text = ""
        """The text of the ids before the read offset, less what was emitted before the last
        ``_overlap`` emitted characters."""
        self._emitted = 0
        """Where the text not yet emitted starts in ``_text`` (after :meth:`flush`, possibly in
        the text of ids still after the read offset)."""
        self.stopped = False
        """True once a stop string matched; no further text is produced."""

    def push(self, token_id: int) -> str:
        """Add a token; return the newly safe text (possibly empty)."""
        if self.stopped:
            return ""
        self._window.append(token_id)
        text = self._text + self._new_text()
        if self._stop:
            # A stop string can only complete in the not-yet-emitted tail (plus overlap).
            start = max(0, self._emitted - self._overlap)
            hits = [i for i in (text.find(s, start) for s in self._stop) if i >= 0]
            if hits:
                self.stopped = True
                return self._take(text, min(hits))
        if text.endswith(_INCOMPLETE):
            return ""  # an incomplete multi-byte character; wait for the next token
        piece = self._take(text, len(text) - self._held_prefix(text))
        self._advance(text)
        return piece

    def flush(self) -> str:
        """The text still held back, when generation ends for another reason than a stop string."""
        if self.stopped:
            return ""
        return self._take((self._text + self._new_text()).rstrip(_INCOMPLETE), None)

    def _decode(self, ids: list[int]) -> str:
        text = self._tokenizer.decode(ids, skip_special_tokens=True)
        assert isinstance(text, str)  # a list only for a batch of id lists
        return text

    def _new_text(self) -> str:
        """The text the ids after the read offset add to the text before it (within the window)."""
        known = self._decode(self._window[: self._read]) if self._read else ""
        return self._decode(self._window)[len(known) :]

    def _advance(self, text: str) -> None:
        """``text`` is the text of every id: move both offsets up, keep only the ids and text
        still needed (the window; what is not emitted yet plus ``_overlap`` characters)."""
        del self._window[: self._read]
        self._read = len(self._window)
        drop = max(0, self._emitted - self._overlap)
        self._text = text[drop:]
        self._emitted -= drop

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
        """``text[emitted:end]`` (to the end when ``end`` is None), now emitted."""
        end = len(text) if end is None else end
        if end <= self._emitted:
            return ""
        piece = text[self._emitted : end]
        self._emitted = end
        return piece
