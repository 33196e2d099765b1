"""Each tenant's passage vectors (what a passage means), one safetensors file per uploaded file.

Contract:

- :meth:`DenseIndex.write` stores one file's vectors (``[n, dim]``, one unit row per passage, in
  the passages' order) with each passage's ``start`` at ``<root>/<tenant>/<file_id>.safetensors``
  (fp16; written to a temporary file and renamed, so a reader never sees half of one);
  :meth:`remove_file` and :meth:`remove_tenant` delete them. :meth:`read` is ``(starts, vectors)``
  in fp32, or None when the file has none (a file over the operator's passage cap, or uploaded
  while no embedding model was prepared) or its vectors cannot be read (logged). :meth:`width` is
  the stored vectors' width from the file's header alone (None: none stored, or unreadable).
- Tenant and file ids are validated before they name a path; only safetensors is ever loaded.
- The BM25 index (:mod:`server.knowledge.passage_index`) stays the store of the passages
  themselves; :mod:`server.knowledge.knowledge_base` joins the two by ``(file_id, start)``.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from adapters.ids import validate_tenant_id

log = logging.getLogger(__name__)
_FILE_ID = re.compile(r"file-[A-Za-z0-9_-]{1,64}")


class DenseIndex:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, tenant: str, file_id: str) -> Path:
        validate_tenant_id(tenant)
        if not _FILE_ID.fullmatch(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.root / tenant / f"{file_id}.safetensors"

    def write(self, tenant: str, file_id: str, starts: list[int], vectors: torch.Tensor) -> None:
        if vectors.dim() != 2 or vectors.shape[0] != len(starts):
            raise ValueError(f"{len(starts)} passages but vectors of shape {tuple(vectors.shape)}")
        path = self._path(tenant, file_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.safetensors")
        try:
            rows = vectors.to(torch.float16).contiguous()
            save_file({"starts": torch.tensor(starts, dtype=torch.int64), "vectors": rows}, str(tmp))
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, tenant: str, file_id: str) -> tuple[list[int], torch.Tensor] | None:
        path = self._path(tenant, file_id)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            starts, vectors = tensors["starts"], tensors["vectors"]
        except (OSError, KeyError, SafetensorError):
            log.exception("the vectors of %s/%s cannot be read; it is searched by its words only", tenant, file_id)
            return None
        if vectors.dim() != 2 or starts.dim() != 1 or vectors.shape[0] != starts.shape[0]:
            log.error("the vectors of %s/%s do not match its passages: searched by words only", tenant, file_id)
            return None
        return [int(s) for s in starts.tolist()], vectors.to(torch.float32)

    def width(self, tenant: str, file_id: str) -> int | None:
        path = self._path(tenant, file_id)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as stored:
                shape = stored.get_slice("vectors").get_shape()
        except (OSError, KeyError, SafetensorError):
            return None
        return int(shape[1]) if len(shape) == 2 else None

    def remove_file(self, tenant: str, file_id: str) -> None:
        self._path(tenant, file_id).unlink(missing_ok=True)

    def remove_tenant(self, tenant: str) -> None:
        validate_tenant_id(tenant)
        shutil.rmtree(self.root / tenant, ignore_errors=True)
