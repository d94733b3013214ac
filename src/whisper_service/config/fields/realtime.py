"""Live transcription over WebSocket."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RealtimeFields(BaseModel):
    """Live transcription over WebSocket: /v1/realtime and /stream."""

    realtime_max_sessions: int = Field(
        8,
        ge=0,
        le=1000,
        description="Open live sessions one process holds; past it the handshake is "
        "refused with HTTP 429. 0 turns live transcription off.",
    )
    realtime_max_sessions_per_client: int = Field(
        4,
        ge=1,
        le=1000,
        description="Open live sessions one client (API key, or address without keys) "
        "holds in one process, so that one cannot take every place; past it the "
        "handshake is refused with HTTP 429. A deployment whose one caller runs every "
        "session sets it to WHISPER_REALTIME_MAX_SESSIONS.",
    )
    realtime_max_pending_turns: int = Field(
        4,
        ge=1,
        le=64,
        description="Closed turns of one session waiting to be transcribed; past it a "
        "client's commit is refused with an error event, and a turn server VAD would close "
        "stays open until one is done (one that reaches the turn cap first fails).",
    )
    realtime_max_frame_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=15 * 1024 * 1024,
        description="Largest audio frame a client may send in one message (PCM16 bytes; "
        "base64 in an append event): 1 MiB is 21.8 s at 24 kHz. A larger one is refused "
        "with an error event before it is decoded.",
    )
    realtime_partial_seconds: float = Field(
        1.0,
        ge=0.2,
        le=30,
        description="While a turn is open, its text so far is re-decoded after this much "
        "new audio (a delta event).",
    )
    realtime_first_partial_seconds: float = Field(
        0.5,
        ge=0.1,
        le=30,
        description="A turn's first partial is decoded after this much audio since speech "
        "started (then every WHISPER_REALTIME_PARTIAL_SECONDS), so the first words show "
        "sooner; at most WHISPER_REALTIME_PARTIAL_SECONDS.",
    )
    realtime_final_beam_size: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Beams a live turn's final is decoded with; unset: "
        "WHISPER_DEFAULT_BEAM_SIZE. 3 takes a tenth off a final at no cost in words "
        "measured; 1 (greedy) answers sooner under load but costs 5-8 points on "
        "conversation (docs/benchmarks.md, live transcription); partials always use 1.",
    )
    realtime_final_context: bool = Field(
        True,
        description="Decode a turn's final text after the previous turn's audio, with "
        "that turn's text forced as the decoder's prefix: fewer word errors at the "
        "turn's edges, for about 20 % (int8) to 55 % (float32) more decoding per final. "
        "false decodes each turn alone (docs/benchmarks.md).",
    )
    realtime_max_turn_seconds: float = Field(
        30.0,
        ge=1,
        le=30,
        description="A turn that never pauses is closed (and transcribed) at this length: "
        "Whisper's window.",
    )
    realtime_idle_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="A session that sends nothing for this long is closed (1008).",
    )
    realtime_max_session_seconds: float = Field(
        3600.0,
        gt=0,
        le=3600,
        description="Longest session (Cloud Run ends a WebSocket at 60 minutes).",
    )
    realtime_max_ahead_seconds: float = Field(
        120.0,
        ge=1,
        le=3600,
        description="How far ahead of real time a session's audio may run (a client "
        "replaying a recording fast): past it, each frame is dropped with an error event.",
    )
    realtime_page: bool = Field(
        True,
        description="Serve the live transcription page at GET /realtime: the browser's "
        "microphone over /v1/realtime, the API key typed into the page and sent as the "
        "WebSocket subprotocol. Static files shipped in the package, served without a key "
        "(they hold none). Off, or with WHISPER_REALTIME_MAX_SESSIONS=0: 404.",
    )
