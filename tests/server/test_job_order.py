"""Queued training jobs start round-robin across tenants, oldest first within a tenant."""

from __future__ import annotations

from dataclasses import dataclass

from server.jobs.order import fair_order


@dataclass(frozen=True)
class Job:
    tenant: str
    name: str


def names(jobs: list[Job]) -> list[str]:
    return [job.name for job in jobs]


QUEUE = [Job("a", "a1"), Job("a", "a2"), Job("a", "a3"), Job("b", "b1"), Job("c", "c1"), Job("b", "b2")]


def test_one_tenant_with_many_jobs_waits_its_turn() -> None:
    assert names(fair_order(QUEUE, [], 6)) == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_tenants_already_training_go_last() -> None:
    assert names(fair_order(QUEUE, ["a"], 3)) == ["b1", "c1", "a1"]
    assert names(fair_order(QUEUE, ["a", "a", "b"], 4)) == ["c1", "b1", "a1", "b2"]


def test_no_slot_no_job_and_an_empty_queue_is_fine() -> None:
    assert fair_order(QUEUE, [], 0) == [] and fair_order([], ["a"], 3) == []
