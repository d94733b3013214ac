"""For the platform, not for callers: health probes, ``/metrics``, and the routes where
Pub/Sub pushes job deliveries."""
