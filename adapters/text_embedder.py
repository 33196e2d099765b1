"""Sentence embeddings with the shipped MiniLM (:mod:`adapters.embedding_model`): text to unit vectors.

Contract: :meth:`TextEmbedder.load` reads the model directory (safetensors weights, the fast
WordPiece tokenizer; never ``trust_remote_code``) in fp32 (on an AVX2-only CPU, bf16 matmul is
tens of times slower than fp32; the model is small enough that fp32 costs nothing). :meth:`embed`
returns one L2-normalised row of :attr:`dim` floats per text (mean of the last layer over the
text's tokens, as the model was trained), each text cut at :data:`MAX_TOKENS` tokens; the dot
product of two rows is their cosine similarity. Texts are embedded in batches of similar length
(little padding); rows come back in the order given. Several threads may call :meth:`embed` at
once (the fast tokenizer, which is not safe to share, is used under a lock). It runs on the CPU in the calling thread
with whatever thread count that thread has: a caller beside the serving engine sets one
(:func:`torch.set_num_threads` is per thread), else an idle OpenMP pool of its own slows the
engine's thread (README, "Thread pools").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

MAX_TOKENS = 256
"""The model's trained sequence length (sentence-transformers' max_seq_length); longer text is cut."""
BATCH = 16


class TextEmbedder:
    def __init__(self, tokenizer: Any, model: Any) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.dim = int(model.config.hidden_size)
        self._tokenizing = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path) -> TextEmbedder:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
        model = AutoModel.from_pretrained(str(model_dir), use_safetensors=True, dtype=torch.float32)
        model.eval()
        return cls(tokenizer, model)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch: int = BATCH, deadline: float | None = None) -> torch.Tensor:
        """The rows of ``texts``; past ``deadline`` (:func:`time.monotonic`) between batches, TimeoutError."""
        out = torch.empty(len(texts), self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for first in range(0, len(order), batch):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"embedded {first} of {len(texts)} texts before the deadline")
            rows = order[first : first + batch]
            with self._tokenizing:
                encoded = self.tokenizer(
                    [texts[i] for i in rows], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
                )
            hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1)
        return out
