"""The service's own API: ``/transcribe``, ``/detect-language`` and ``/jobs``, with the
form that ``/transcribe`` and ``POST /jobs`` share (``form``)."""
