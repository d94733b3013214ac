"""The app served in this process over ``httpx.ASGITransport``: real routing,
middleware, decoding, scheduler and error handling, with a stand-in engine (or any
loaded one). For what one process's HTTP behaviour is; signals, several processes and
the model's accuracy are tested against real servers instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from tests.support import MODEL_CACHE
from tests.support.fakes import FakeEngine, loader
from whisper_service.app import create_app
from whisper_service.config import Settings, load_settings
from whisper_service.serving.runtime import Runtime
from whisper_service.serving.startup import EngineLoader

BASE_URL = "http://testserver"


@dataclass
class InProcess:
    """A started app and a client for it."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        """The app's runtime (scheduler, monitor, engine, drain state)."""
        runtime: Runtime = self.app.state.runtime
        return runtime


def quiet_settings(**overrides: Any) -> Settings:
    """The development preset, quiet, with no job store unless asked for."""
    values: dict[str, Any] = {
        "app_env": "development",
        "log_level": "WARNING",
        "jobs_store": None,
        "model_cache_dir": MODEL_CACHE,
        "cpu_threads": 2,
    }
    values.update(overrides)
    return load_settings(**values)


@asynccontextmanager
async def serve(
    engine: FakeEngine | None = None,
    *,
    engine_loader: EngineLoader | None = None,
    headers: dict[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[InProcess]:
    """Start the app (lifespan included) and wait until it is ready."""
    config = quiet_settings(**settings)
    app = create_app(config, engine_loader=engine_loader or loader(engine or FakeEngine()))
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        for _ in range(6000):
            if runtime.ready:
                break
            await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=headers, timeout=60
        ) as client:
            yield InProcess(app, client, config)
