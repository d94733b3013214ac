"""The live transcription page in a real browser: Debian's chromium, headless, its
microphone a recording (Chromium's fake capture device), against a real server under
the production preset (API keys required, a CORS allow-list that does not name the
page's origin). The screenshot is kept in ``.artifacts/browser/``."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support import AUDIO, JFK_REFERENCE, REPO, LiveServer, running, word_error_rate
from tests.support.speakers import load, wav_bytes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = "sk-page-test-0123456789abcdef"
ARTIFACTS = Path(os.environ.get("WHISPER_TEST_ARTIFACTS", REPO / ".artifacts")) / "browser"
RECORDING = "jfk.flac"
SECONDS = 11.0
# The page's finals against /transcribe of the same file: measured 9 % (2 words of 22:
# "so my" heard as "so am I" at the start of the first turn). A Python client streaming
# the file to the same server gets the same four finals: the page loses nothing.
MAX_WER_TO_TRANSCRIBE = 0.15


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The production preset: keys required, CORS for another origin only."""
    with running(
        tmp_path_factory.mktemp("page-server"),
        APP_ENV="production",
        WHISPER_API_KEYS=KEY,
        WHISPER_CORS_ORIGINS="https://console.example.com",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless chromium whose microphone plays the recording once, then silence.
    Required, not optional: `make tools` installs it, so its absence is a broken setup."""
    assert Path(CHROMIUM).exists(), "chromium is missing: `make tools` installs Debian's"
    wav = tmp_path_factory.mktemp("capture") / "speech.wav"
    wav.write_bytes(wav_bytes(load(RECORDING)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}%noloop",
                "--no-sandbox",  # root in CI
            ],
        )
        yield browser
        browser.close()


def status(page: Page) -> tuple[str, float, str]:
    """The page's state, the seconds of audio it sent, and what it says."""
    state, sent, text = page.eval_on_selector(
        "#status", "e => [e.dataset.state, e.dataset.sent || '0', e.textContent]"
    )
    return state, float(sent), text


def finals(page: Page) -> list[str]:
    """The finals shown, in order."""
    texts: list[str] = page.eval_on_selector_all(
        "#transcript .final", "nodes => nodes.map(n => n.textContent)"
    )
    return texts


def open_turns(page: Page) -> int:
    """Turns shown whose final has not arrived."""
    return int(page.eval_on_selector("#transcript", "e => e.dataset.open"))


def wait_for_state(page: Page, state: str, timeout: float = 30.0) -> None:
    """Until the page's state is ``state``. Polled from here: the page's own
    Content-Security-Policy forbids the eval that ``wait_for_function`` polls with."""
    give_up = time.monotonic() + timeout
    while status(page)[0] != state:
        assert time.monotonic() < give_up, f"not {state!r}: {status(page)}"
        time.sleep(0.1)


def test_the_page_transcribes_the_microphone_as_transcribe_does(
    production: LiveServer, browser: Browser
) -> None:
    whole = httpx.post(
        f"{production.url}/transcribe",
        files={"file": (RECORDING, (AUDIO / RECORDING).read_bytes())},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    )
    whole.raise_for_status()
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{production.url}/realtime")

    # A wrong key is named as such, before any audio is taken.
    page.fill("#key", "sk-not-the-key-0123456789abcdef")
    page.click("#start")
    wait_for_state(page, "error")
    assert "refused the key" in status(page)[2]
    assert status(page)[1] == 0

    page.fill("#key", KEY)
    page.click("#start")
    give_up = time.monotonic() + 90
    while time.monotonic() < give_up:
        state, sent, text = status(page)
        assert state != "error", text
        if sent > SECONDS + 2 and open_turns(page) == 0 and finals(page):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no finals in time: {status(page)}, {finals(page)}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "realtime-page.png"), full_page=True)

    page.click("#stop")
    wait_for_state(page, "stopped")
    shown = " ".join(finals(page))
    assert not errors
    assert word_error_rate(whole.json()["text"], shown) <= MAX_WER_TO_TRANSCRIBE
    assert word_error_rate(JFK_REFERENCE, shown) <= MAX_WER_TO_TRANSCRIBE

    # The session was the page's, its key came as the subprotocol: it is in no log line
    # and no URL the server saw.
    logs = production.logs()
    assert KEY not in logs
    events = [line.get("message") for line in production.log_events()]
    assert "realtime_session_opened" in events
    assert "realtime_session_closed" in events
