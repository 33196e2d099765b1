"""Server configuration from the environment (prefix ``SWAPLORA_``) and the CLI.

Every field has a safe default; ``swaplora serve --host --port --model`` override the matching
fields. Read once at start-up into a frozen :class:`Settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.execution_plan import PlanRequest
from server.tenancy.tenant_settings import TenantLimits

MIN_ADMIN_KEY_LENGTH = 24
"""The admin key opens every tenant: a short one is guessable (``make run`` generates 52 characters)."""


class Settings(BaseSettings):
    """All knobs of a running server."""

    model_config = SettingsConfigDict(env_prefix="SWAPLORA_", frozen=True, extra="ignore")

    data: Path = Field(Path("./data"), description="Data directory: adapters, tenants, converted base model.")
    admin_key: str | None = Field(
        None,
        description=f"Admin API key (manages tenants, sees every adapter; at least {MIN_ADMIN_KEY_LENGTH} "
        "characters). Unset: no admin access.",
    )
    model: str | None = Field(
        None, description="A Hugging Face causal-LM directory; unset: the embedded SmolLM2-135M-Instruct."
    )
    embedding_model: str | None = Field(
        None,
        description="A sentence-embedding model directory (BERT, safetensors) that ranks passages by meaning "
        "for retrieval; unset: the shipped all-MiniLM-L6-v2, extracted under <data>/models.",
    )
    retrieval_embeddings: bool = Field(
        True, description="Rank retrieved passages by meaning (embeddings) as well as by words (BM25)."
    )
    retrieval_embed_max_passages: int = Field(
        2000, ge=0, description="Most passages of one uploaded file that get embeddings; larger files: BM25 only."
    )
    retrieval_embed_timeout_s: float = Field(
        120.0, gt=0, description="Time embedding one uploaded file's passages may take; past it: BM25 only."
    )
    retrieval_backfill_s: float = Field(
        600.0,
        ge=1,
        description="How often files left without embeddings (busy, slow, no model yet) are embedded, in seconds.",
    )
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, description="TCP port to bind.")
    device: str | None = Field(None, description="torch device; unset: cuda when present, else cpu.")
    max_rank: int = Field(64, ge=1, description="Largest LoRA rank an uploaded adapter may have.")
    max_upload_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="Largest accepted adapter upload (all files together)."
    )
    max_batch_size: int = Field(16, ge=1, description="Most sequences decoded together in one step.")
    max_waiting: int = Field(256, ge=1, description="Most requests queued before new ones get 429.")
    max_waiting_per_tenant: int = Field(
        64, ge=1, description="Most requests of one tenant queued before its new ones get 429."
    )
    max_context: int = Field(
        4096, ge=64, description="Cap on prompt + completion tokens (also capped by the model's own limit)."
    )
    default_max_tokens: int = Field(512, ge=1, description="Completion length when a request sets no max_tokens.")
    max_connections: int = Field(
        1024, ge=16, description="Open connections and in-flight requests the server accepts; beyond it, 503."
    )
    auth_failures_per_minute: int = Field(
        20, ge=1, description="Failed authentications one client address may make in 60 s before it gets 429."
    )
    body_idle_timeout_s: float = Field(
        30.0, gt=0, description="A request body that pauses longer than this gets 408 (slow senders hold connections)."
    )
    min_body_bytes_per_s: int = Field(
        16 * 1024,
        ge=1,
        description="After body_idle_timeout_s, a request body must average at least this many bytes/s, else 408.",
    )
    max_chat_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest chat completion request body; larger ones get 413 as they stream in."
    )
    default_limit_ceilings: TenantLimits = Field(
        TenantLimits(storage_bytes=10 << 30, adapters=100, adapter_versions=1000, files=1000, comparisons=100_000),
        description="The operator's limits every new tenant starts with (JSON, e.g. "
        '\'{"requests_per_minute": 60, "storage_bytes": 1073741824}\'; the fields it leaves out are unlimited); '
        "tenants may only lower them. Default: 10 GiB of storage, 100 adapters, 1000 versions, 1000 files, "
        "100000 comparisons.",
    )
    visitor_limit_ceilings: TenantLimits = Field(
        TenantLimits(requests_per_minute=20, tokens_per_day=50_000, concurrent_requests=2),
        description="Chat limits of one page visitor (a publishable key and a client address), as JSON; tenants "
        "may only lower them (visitor_limits).",
    )
    max_running_per_tenant: int | None = Field(
        None,
        ge=1,
        description="Rows of the running batch one tenant may hold (tenants may be given fewer with "
        "limit_ceilings.batch_rows); unset: three quarters of max_batch_size.",
    )
    publishable_max_tokens: int = Field(
        1024,
        ge=1,
        description="Most completion tokens a publishable (website) key may ask for; such keys may not use ignore_eos.",
    )
    prefix_cache_mb: int = Field(
        512,
        ge=0,
        description="Memory for the KV of prompt prefixes kept for reuse (system prompts, conversation history), "
        "in MiB, LRU beyond it; 0 turns the prefix cache off.",
    )
    prefix_block_tokens: int = Field(
        16,
        ge=1,
        le=1024,
        description=(
            "Tokens per prefix-cache block. A prompt's partial last block is recomputed; smaller blocks recompute "
            "less of a long shared prefix (the passages of retrieval) at more blocks to hash and copy."
        ),
    )
    prefix_cache_per_tenant: bool = Field(
        True,
        description="Keep base-model prefixes apart per tenant (an adapter's are its tenant's anyway), so one "
        "tenant cannot time another's cached prompts; false shares them (more hits, less isolation).",
    )
    served_retention_days: float | None = Field(
        30,
        gt=0,
        description="Days the record of each chat completion (version, latency, feedback, and stored conversations) "
        "is kept; unset: forever.",
    )
    max_choices: int = Field(4, ge=1, description="Largest n (choices per request); each is a row of the batch.")
    max_grammar_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest JSON schema (response_format, tools) a request may bring."
    )
    adapter_cache_mb: int = Field(
        1024, ge=1, description="Memory for resident adapters next to the base, in MiB (LRU beyond it)."
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="Intra-op CPU threads of the engine; unset: every core while no training runs, the cores a "
        "training worker leaves while one does (server.cpu_share). On a small or shared CPU, 1 avoids stalls.",
    )
    adapter_host_cache_mb: int = Field(
        2048, ge=0, description="Host memory for adapters evicted from the device (ready tensors), in MiB."
    )
    compute_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="The base's compute dtype; auto: measured at start-up (bf16 only where it is fast)."
    )
    cpu_weights: Literal["auto", "nf4", "dense"] = Field(
        "auto", description="On a CPU: keep NF4 weights packed (nf4) or dequantize them once (dense); auto: measured."
    )
    cpu_dense_budget_mb: int | None = Field(
        None,
        ge=0,
        description="Largest dense copy of the base's weights a CPU plan may make, in MiB; "
        "unset: half the machine's memory.",
    )
    log_level: str = Field("info", description="Python logging level.")
    max_file_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Largest accepted training file upload (POST /v1/files)."
    )
    file_check_timeout_s: float = Field(
        120.0, gt=0, description="Time trainer.check may take to validate one uploaded document."
    )
    file_check_memory_mb: int = Field(
        4096, ge=256, description="Address-space limit (RLIMIT_AS) of the trainer.check process, in MiB."
    )
    max_concurrent_checks: int = Field(
        2, ge=1, description="Upload/hyperparameter checker processes running at once; more wait, then get 429."
    )
    max_concurrent_jobs: int = Field(
        1, ge=1, description="Training workers running at once (one per device by default; the rest queue)."
    )
    max_job_seconds: float = Field(
        4 * 3600.0,
        gt=0,
        description="Longest training loop a job may ask for (hyperparameters.max_seconds); "
        "jobs that ask for none are held to it too.",
    )
    max_job_epochs: int = Field(50, ge=1, description="Most epochs a job may ask for (hyperparameters.n_epochs).")
    job_grace_seconds: float = Field(
        10.0, gt=0, description="Time a cancelled worker gets after SIGTERM before SIGKILL."
    )
    job_log_retention_days: float | None = Field(
        30.0, gt=0, description="Days a finished job's events and worker log are kept; unset: forever."
    )
    file_retention_days: float | None = Field(
        None,
        gt=0,
        description="Days an uploaded training file is kept (unless an unfinished job uses it); unset: until deleted.",
    )
    drain_seconds: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM: how long streams in flight may take to finish (new requests get "
        "503 with Retry-After meanwhile) before the server exits anyway.",
    )

    cluster: str | None = Field(
        None,
        description="Run the engine as Ray Serve replicas: local (start a Ray instance here), auto (the Ray "
        "cluster this machine belongs to) or ray://host:port; unset: the engine runs in this process.",
    )
    cluster_replicas: int = Field(2, ge=1, description="Engine replicas in a cluster (without autoscaling).")
    cluster_autoscaling: dict[str, Any] | None = Field(
        None,
        description="Ray Serve autoscaling_config for the engine deployment, as JSON (e.g. "
        '{"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 8}); replaces cluster_replicas.',
    )
    cluster_adapters_per_replica: int = Field(
        64, ge=1, description="Adapter ids one replica holds for routing (Ray Serve multiplexing, LRU beyond)."
    )
    cluster_replica_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for each engine replica.")
    cluster_training_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for each fine-tuning job.")
    cluster_replica_gpus: float | None = Field(
        None,
        ge=0,
        description="GPUs Ray reserves for each engine replica; unset: 1 where the cluster has GPUs, else 0.",
    )

    @field_validator("admin_key")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value and len(value) < MIN_ADMIN_KEY_LENGTH:
            raise ValueError(
                f"the admin key must have at least {MIN_ADMIN_KEY_LENGTH} characters "
                "(generate one: openssl rand -hex 32)"
            )
        return value

    @property
    def plan_request(self) -> PlanRequest:
        """What the operator asked of the execution plan (see :mod:`adapters.execution_plan`)."""
        budget = None if self.cpu_dense_budget_mb is None else self.cpu_dense_budget_mb << 20
        return PlanRequest(self.compute_dtype, self.cpu_weights, budget)

    @property
    def adapters_dir(self) -> Path:
        return self.data / "adapters"

    @property
    def models_dir(self) -> Path:
        return self.data / "models"

    @property
    def files_dir(self) -> Path:
        return self.data / "files"

    @property
    def knowledge_dir(self) -> Path:
        return self.data / "knowledge"

    @property
    def knowledge_vectors_dir(self) -> Path:
        return self.data / "knowledge-vectors"

    @property
    def embedding_model_dir(self) -> Path | None:
        """Where retrieval's embedding model is (None: embeddings are off)."""
        if not self.retrieval_embeddings:
            return None
        from adapters.embedding_model import embedding_model_dir

        return Path(self.embedding_model) if self.embedding_model else embedding_model_dir(self.models_dir)

    @property
    def jobs_dir(self) -> Path:
        return self.data / "jobs"

    @property
    def db_path(self) -> Path:
        return self.data / "swaplora.db"
