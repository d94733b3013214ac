"""Async jobs for long audio, spread over every instance.

- ``records``: what a job is (record, plan, units, checkpoints);
- ``transitions``: every change of a record, as pure functions;
- ``store`` / ``firestore_store``: where records live (a directory, or Firestore);
- ``objects`` / ``files``: where a job's input, unit audio and result live;
- ``dispatch``: how work reaches an instance (Pub/Sub push, or a local queue);
- ``push_auth``: only the push subscription may deliver;
- ``chunking``: long audio cut into windows, windows grouped into units;
- ``work``: one delivery done (a plan, or a unit); ``merge``: the units joined;
- ``service``: the jobs side of one process; ``setup``: its backends opened.

Not imported here: a process without a job store never loads any of it.
"""
