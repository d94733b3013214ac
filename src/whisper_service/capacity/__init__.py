"""What one process can run at once, shared by requests, live sessions and jobs.

- ``scheduler``: admission control, the bounded queue and the inference threads;
- ``memory``: the decoded-audio budget, and what it sets aside for the model's workers.

It sits below ``serving`` and ``jobs``, which both use it, so neither imports the other.
"""

from whisper_service.capacity.memory import AudioMemory, MemoryRefused, Reservation
from whisper_service.capacity.scheduler import Rejected, Scheduler, SchedulerStats

__all__ = [
    "AudioMemory",
    "MemoryRefused",
    "Rejected",
    "Reservation",
    "Scheduler",
    "SchedulerStats",
]
