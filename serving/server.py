"""The model server's entry point: `mlserver start <folder>`, with a request-body limit held before
any body is parsed (`python -m serving.server <folder>`).

MLServer 1.7.1 has no setting for the size of a REST body (only gRPC's `grpc_max_message_length`),
and its FastAPI app reads, decompresses (gzip, unbounded) and parses a whole body before a runtime
sees the request; a limit in the runtime would come after the cost it is meant to spare. So the app
gets an ASGI middleware, the outermost one, that answers 413 once a declared Content-Length or the
bytes received pass the limit, and bounds a gzip body by its decompressed size. The limit is
`assay_max_body_bytes` in the folder's settings.json (MLServer ignores keys it does not know);
resources/deployment/model_server.py writes it from the served use cases' `serving.max_body_bytes`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from pathlib import Path

MAX_BODY_SETTING = "assay_max_body_bytes"
# A refused body is still read to its end, up to this much, so the client (still sending) reads the
# 413 instead of a reset connection; past it the connection is dropped.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: POST bodies of at most `max_bytes` (after gzip decompression), else 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit():
            return await _answer(send, 400, "content-length: not a number of bytes")
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b"gzip"):
            return await _answer(send, 415, f"content-encoding: {encoding.decode(errors='replace')!r} is not "
                                            "accepted; send identity or gzip")
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == b"gzip" else None
        over = inflate is None and int(declared) > self.max_bytes
        if inflate is None and not over:  # the common case: a plain body in one message, passed on as it is
            first = await receive()
            if first["type"] == "http.request" and not first.get("more_body", False):
                if len(first.get("body", b"")) > self.max_bytes:
                    return await self._too_large(send)
                return await self.app(scope, _replay(first, receive), send)
            receive = _replay(first, receive)
        body, received, more = bytearray(), 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk, more = message.get("body", b""), message.get("more_body", False)
            received += len(chunk)
            if over:
                if received > DRAIN_LIMIT_BYTES:
                    break
                continue
            if inflate is not None:
                try:  # at most one byte past the limit comes out: enough to know it is over
                    chunk = inflate.decompress(chunk, self.max_bytes + 1 - len(body))
                except zlib.error as error:
                    return await _answer(send, 400, f"content-encoding: not a valid gzip body ({error})")
            body += chunk
            over = len(body) > self.max_bytes
        if over:
            return await self._too_large(send)
        if inflate is not None:
            if not inflate.eof:
                return await _answer(send, 400, "content-encoding: the gzip body is truncated")
            # MLServer must not decompress it again.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-encoding"]}
        return await self.app(scope, _replay({"type": "http.request", "body": bytes(body), "more_body": False}, receive),
                              send)

    async def _too_large(self, send) -> None:
        await _answer(send, 413, f"request body over the limit of {self.max_bytes} bytes (serving.max_body_bytes)")


def _replay(message: dict, receive):
    """An ASGI receive that gives `message` first, then what `receive` gives."""
    delivered = False

    async def replay():
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return message

    return replay


async def _answer(send, status: int, error: str) -> None:
    content = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": content})


async def start(folder: str) -> None:
    from fastapi import FastAPI
    from mlserver.cli.serve import load_settings
    from mlserver.server import MLServer

    settings, models = await load_settings(folder)
    limit = json.loads((Path(folder) / "settings.json").read_text()).get(MAX_BODY_SETTING)
    server = MLServer(settings)
    app = server._rest_server._app  # MLServer 1.7.1 offers no public hook for an ASGI middleware
    if not isinstance(app, FastAPI):
        raise RuntimeError("this MLServer keeps its REST app elsewhere: the body limit cannot be installed")
    if limit is not None:
        app.add_middleware(BodyLimit, max_bytes=int(limit))
    await server.start(models)


def main() -> None:
    from mlserver.logging import configure_logger
    from mlserver.utils import install_uvloop_event_loop

    configure_logger()
    install_uvloop_event_loop()
    asyncio.run(start(sys.argv[1]))


if __name__ == "__main__":
    main()
