"""Time limits on what a client sends, which neither uvicorn nor Starlette set by themselves.

The size limit is FastAPI's own (`max_body_size`, 413); these two cover time:

- `head_deadline`: uvicorn arms its keep-alive timer only after a response and cancels it on any
  byte received, so a socket that never sends a request, or sends its headers a byte at a time, is
  held forever. The protocol below gives every request head a deadline from its first byte (from the
  connection for the first request), and closes a connection whose body nobody will read (a 413,
  a 408) LINGER_S after the answer instead of draining it.
- `BodyDeadline`: uvicorn waits for a body as long as bytes keep coming; the middleware answers 408
  when the body is not complete within its deadline.
"""

from __future__ import annotations

import asyncio

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

LINGER_S = 2.0
"""How long a connection stays open after an answer given before its body was read (413, 408)."""


def head_deadline(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol closing a connection whose request head is not complete in `timeout_s`."""

    class HeadDeadlineProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the first bytes of the next request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()
            elif self._head_timer is None:
                self._arm()  # a body read past its answer ended: the next head has its deadline

        def on_response_complete(self) -> None:
            unread_body = self.conn.their_state is h11.SEND_BODY
            super().on_response_complete()
            if unread_body and not self.transport.is_closing():
                # uvicorn discards what still comes; closing at once would reset a client still
                # sending its body before it reads the answer
                self.loop.call_later(LINGER_S, self.transport.close)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expired(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol


class BodyDeadline:
    """408 when a request body is not complete `timeout_s` after its head.

    Once the body is in, `receive` is passed through untouched: a streaming response listens on it for
    the client's disconnect for as long as it runs.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        complete = False

        async def receive_in_time() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.timeout_s:g} s"
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, receive_in_time, send)
