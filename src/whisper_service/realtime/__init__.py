"""Live transcription over WebSocket: audio streamed in, turns found by a streaming
VAD, text streamed out.

``audio`` turns client frames into 16 kHz samples, ``vad`` finds where speech starts
and stops as the audio arrives, ``session`` holds one session's turns (bounded) and
sends its events, ``protocol`` parses and checks what clients send (both protocols),
``dialects`` drive a session in each protocol and show its events back,
``transcriber`` decodes turns through the process's scheduler. The WebSocket routes
that open sessions are ``api/live``.
"""
