"""Async jobs for long audio: records and their store (``records``, ``objects``,
``store``), cutting audio into windows (``chunking``) and running them (``runner``)."""
