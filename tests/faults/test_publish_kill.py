"""kill -9 of a process in the middle of publishing adapter versions, at random moments, many times:
whatever the moment, the store never lists a version that is not whole (every listed version's
weights match its manifest's sha256), ``current`` always names a listed version, and one sweep (what
the job runner does after a worker died, and the server at start-up) leaves no temp directory and
no version that no publish recorded. The publisher is a real process using the real store, as the
training worker does in trainer/publish.py."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.manifest import sha256_file
from adapters.store import WEIGHTS_FILE, AdapterStore

pytestmark = [pytest.mark.faults]

KILLS = 25
PUBLISHER = """
import os, sys
from pathlib import Path
from adapters.store import AdapterStore
from tests.adapters.helpers import manifest_for
from adapters.manifest import sha256_file

store = AdapterStore(Path(sys.argv[1]))
weights = Path(sys.argv[1]).parent / f"weights-{os.getpid()}.bin"
for i in range(10_000):
    weights.write_bytes(os.urandom(2 << 20))
    digest = sha256_file(weights)
    store.publish("acme", "bot", {"adapter_config.json": b"{}", "adapter_model.safetensors": weights},
                  manifest_for("acme", "bot", weights_sha256=digest))
    print(i, flush=True)
"""


def assert_whole(store: AdapterStore) -> int:
    """Every listed version is whole and ``current`` is one of them; returns how many there are."""
    summaries = store.list_adapters("acme")
    if not summaries:
        return 0
    (summary,) = summaries
    assert summary.current_version in summary.versions
    for manifest in store.versions("acme", "bot"):
        version_dir = store.root / "acme" / "bot" / str(manifest.version)
        assert sha256_file(version_dir / WEIGHTS_FILE) == manifest.weights_sha256, manifest.model_id
    return len(summary.versions)


def test_kill_9_mid_publish_never_leaves_a_half_version(tmp_path: Path) -> None:
    root = tmp_path / "adapters"
    store = AdapterStore(root)
    rng = random.Random(7)
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    root_of_repo = Path(__file__).resolve().parents[2]
    swept_total = 0
    for _ in range(KILLS):
        process = subprocess.Popen(
            [sys.executable, str(script), str(root)],
            cwd=root_of_repo,
            stdout=subprocess.PIPE,
            env={"PYTHONPATH": str(root_of_repo), "PATH": "/usr/bin"},
        )
        assert process.stdout is not None
        process.stdout.readline()  # one version published: the store is warm, the next is under way
        time.sleep(rng.uniform(0.0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        assert_whole(store)  # before any sweep: what readers see right after the crash
        swept_total += len(store.sweep())
        count = assert_whole(store)
        leftovers = [p for p in (root / "acme" / "bot").iterdir() if p.name.startswith((".tmp-", ".trash-"))]
        assert leftovers == [] and count >= 1
        recorded = int((root / "acme" / ".last-version.bot").read_text())
        assert max(summary.versions[-1] for summary in store.list_adapters("acme")) <= recorded
    print(f"\n{KILLS} kills mid-publish, {swept_total} leftovers swept, {assert_whole(store)} whole versions kept")
