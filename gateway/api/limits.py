"""Request body limit as plain ASGI middleware: refuse by ``Content-Length`` up front, and count
streamed (chunked) bodies as they arrive, so no request body is ever read beyond the limit.

A request with neither ``Content-Length`` nor ``Transfer-Encoding`` has no body (RFC 9112 6.3), nor
has one declaring ``Content-Length: 0``: those (every GET a poller sends) pass straight through.
The refusal is problem+json, or an OperationOutcome (``too-costly``) under ``/fhir``."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.problem import PayloadTooLarge, problem_response
from gateway.fhir_api.outcome import fhir_response, operation_outcome

__all__ = ["BodyLimitMiddleware"]


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _refusal(self, scope: Scope) -> Any:
        error = PayloadTooLarge(f"The request body exceeds the limit of {self.max_body_bytes} bytes.",
                                status=413)
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if path == "/fhir" or path.startswith("/fhir/"):  # FHIR clients get an OperationOutcome
            return fhir_response(operation_outcome(error.fhir_issue_code, error.detail), 413)
        return problem_response(error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        may_have_body = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body_bytes:
                    await self._refusal(scope)(scope, receive, send)
                    return
                may_have_body = may_have_body or declared != 0
            elif name == b"transfer-encoding":
                may_have_body = True
        if not may_have_body:
            await self.app(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body overflowed, whatever the app answers (FastAPI turns a failed body read
            # into a 400) is replaced by the 413 below.
            nonlocal started
            if exceeded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if exceeded and not started:
            await self._refusal(scope)(scope, receive, send)
