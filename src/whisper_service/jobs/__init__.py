"""Async jobs for long audio.

- ``records``: what a job is (record, options, progress, checkpoint);
- ``objects``: where its objects live (a directory or a GCS bucket), compare-and-swap;
- ``store``: records, inputs, checkpoints and results laid out in those objects;
- ``chunking``: long audio cut into windows of at most 30 s;
- ``execution``: one job run batch by batch, with checkpoints and progress;
- ``takeover``: jobs nobody holds claimed, finished ones forgotten;
- ``runner``: the jobs side of one process (slots, leases, hand-over, sweeps).

Not imported here: a process without a job store never loads any of it.
"""
