"""Live transcription over WebSocket (issue 17, in progress on this branch): audio
streamed in, turns found by a streaming VAD, text streamed out.

``audio`` turns client frames into 16 kHz samples, ``vad`` finds where speech starts
and stops as the audio arrives.
"""
