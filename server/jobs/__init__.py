"""The jobs room: training files and fine-tuning jobs, from upload to a published adapter version.

Contract: :mod:`~server.jobs.training_files` stores uploaded documents once
:mod:`~server.jobs.file_check` (a bounded child process, :mod:`~server.jobs.child_process`)
has accepted them; :mod:`~server.jobs.job_store` keeps jobs and their events in SQLite with a
state machine; :mod:`~server.jobs.runner` runs queued jobs (in :mod:`~server.jobs.order`,
round-robin across tenants) as training-worker processes and turns their output into events
(:mod:`~server.jobs.events`); :mod:`~server.jobs.retention` deletes old logs and files.
Nothing here imports the engine: a trained adapter reaches serving through the adapter store.
"""
