"""A least-busy HTTP balancer on 127.0.0.1, standing in for Cloud Run's front end in
front of several instances: one push subscription, any instance gets each request.

Every request goes to the backend with the fewest requests open (ties: the one that
served fewest), on a connection of
its own (so a client that keeps its connection alive is still spread); a backend that
refuses the connection is skipped. A backend that dies mid-request closes the client's
connection without an answer, as a lost instance does.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from tests.support import free_port


class Balancer:
    """Serves on ``url`` until stopped; ``served`` counts requests per backend port."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.open: Counter[int] = Counter()
        self.served: Counter[int] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            kept = []
            for line in lines[1:]:
                name = line.split(":", 1)[0].strip().lower()
                if name == "content-length":
                    length = int(line.split(":", 1)[1])
                if name and name != "connection":
                    kept.append(line)
            body = await reader.readexactly(length)
            request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode()
            await self._forward(request + body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _forward(self, request: bytes, writer: asyncio.StreamWriter) -> None:
        # Fewest open requests first; among equals, the one that served fewest so far.
        for port in sorted(self.backends, key=lambda p: (self.open[p], self.served[p])):
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # a dead instance: the next one
            self.open[port] += 1
            self.served[port] += 1
            try:
                up_writer.write(request)
                await up_writer.drain()
                while chunk := await up_reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass  # the instance died mid-request: the client sees a cut connection
            finally:
                self.open[port] -= 1
                up_writer.close()
            return
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    def stop(self) -> None:
        """Stop serving."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
