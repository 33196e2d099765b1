"""Connect to Ray, start the engine deployment, hand the HTTP process its generation source.

Contract:

- :func:`start_engines` connects to ``settings.cluster`` (``local``: a Ray instance started here
  and stopped with the server; ``auto``: the cluster this machine belongs to; ``ray://host:port``:
  Ray Client), runs the engine deployment as the Serve application ``swaplora`` (no Serve HTTP
  proxy: requests reach it through this process's routes) and waits until a replica describes its
  base. Replicas get ``cluster_replica_cpus`` / ``cluster_replica_gpus`` each, ``cluster_replicas``
  of them or ``cluster_autoscaling``; each runs ``max_batch_size`` rows with up to ``max_waiting``
  more queued, so Ray's own limit on ongoing requests is their sum.
- :func:`stop_engines` deletes the application and, for ``local``, stops Ray.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

from server.cluster.cluster_admitter import ClusterAdmitter
from server.cluster.remote_base import BaseFacts
from server.cluster.replica_board import ReplicaBoard
from server.metrics import Metrics
from server.settings import Settings

# Ray's C++ failure-signal handler (installed when ray is imported into a driver) turns SIGTERM
# into an abort 0.2 s later: no drain, Ray's own processes left behind. Python's handlers do it right.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")

log = logging.getLogger(__name__)
APP_NAME = "swaplora"
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
"""A local instance's object store: only events and requests cross it, never tensors."""


class _RayHost:
    """Connects to Ray from a thread that lives until :meth:`stop`.

    Ray's local processes (GCS, raylet) die with the thread that started them (Linux delivers
    the parent-death signal when the creating *thread* exits), so they must not be started from
    the short-lived model loader thread."""

    def __init__(self) -> None:
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def connect(self, address: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._host, args=(address,), name="swaplora-ray", daemon=True)
            self._thread.start()
        self._connected.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()

    def _host(self, address: str) -> None:
        import ray

        try:
            if address == "local":
                ray.init(
                    address="local",
                    namespace=APP_NAME,
                    include_dashboard=False,
                    object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, namespace=APP_NAME, log_to_driver=False)
        except BaseException as exc:  # handed to connect(), which raises it in the loader
            self._error = exc
        finally:
            self._connected.set()
        self._stop.wait()


_ray_host = _RayHost()


def connect(settings: Settings) -> None:
    """Connect this process to ``settings.cluster`` (once; later calls wait for the first)."""
    assert settings.cluster is not None
    _ray_host.connect(settings.cluster)


def replica_gpus(settings: Settings) -> float:
    """GPUs per engine replica (and training task): the setting, else 1 where the cluster has GPUs."""
    import ray

    if settings.cluster_replica_gpus is not None:
        return settings.cluster_replica_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0  # type: ignore[no-untyped-call]


def start_engines(settings: Settings, model_dir: Path, metrics: Metrics) -> tuple[BaseFacts, ClusterAdmitter]:
    """Start (or join) the cluster's engine replicas; their base's facts and the admitter to them."""
    from ray import serve

    from server.cluster.replica import engine_deployment

    assert settings.cluster is not None
    connect(settings)
    serve.start(proxy_location="Disabled")
    threads = settings.torch_threads or max(1, math.floor(settings.cluster_replica_cpus))
    scale: dict[str, Any] = (
        {"autoscaling_config": settings.cluster_autoscaling}
        if settings.cluster_autoscaling
        else {"num_replicas": settings.cluster_replicas}
    )
    deployment = engine_deployment(settings.cluster_adapters_per_replica).options(
        max_ongoing_requests=settings.max_batch_size + settings.max_waiting,
        ray_actor_options={"num_cpus": settings.cluster_replica_cpus, "num_gpus": replica_gpus(settings)},
        **scale,
    )
    handle = serve.run(deployment.bind(settings, str(model_dir), threads), name=APP_NAME, route_prefix=None)
    facts: BaseFacts = handle.describe.remote().result(timeout_s=600)
    autoscaling = settings.cluster_autoscaling or {}
    replicas = int(autoscaling.get("max_replicas", 1)) if autoscaling else settings.cluster_replicas
    admitter = ClusterAdmitter(
        handle,
        metrics,
        capacity=replicas * (settings.max_batch_size + settings.max_waiting),
        per_tenant=settings.max_batch_size + settings.max_waiting_per_tenant,
        board=ReplicaBoard(settings.cluster_adapters_per_replica),
    )
    log.info("engine replicas ready on Ray (%s): %s", settings.cluster, scale)
    return facts.with_tokenizer(model_dir), admitter


def stop_engines(settings: Settings) -> None:
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    try:
        serve.delete(APP_NAME)
    finally:
        if settings.cluster == "local":
            serve.shutdown()  # type: ignore[no-untyped-call]
            ray.shutdown()
        _ray_host.stop()
