"""Every httpx exception is translated at the boundary: none leaks, and each lands on the right side."""

from __future__ import annotations

import httpx
import pytest

from adapters.http.classify import MAX_BODY_KEPT, classify_exception, classify_response

_PERMANENT = {httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL}


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


@pytest.mark.parametrize("exc_type", sorted(_all_subclasses(httpx.HTTPError) | {httpx.InvalidURL},
                                            key=lambda c: c.__name__))
def test_every_httpx_exception_is_classified(exc_type: type[Exception]) -> None:
    if issubclass(exc_type, httpx.HTTPStatusError):
        request = httpx.Request("POST", "https://x.example")
        for status, expected in ((503, "retry"), (404, "dead")):
            response = httpx.Response(status, request=request)
            outcome = classify_exception(exc_type("boom", request=request, response=response))
            assert (outcome.status, outcome.http_status) == (expected, status)
        return
    outcome = classify_exception(exc_type("boom"))  # type: ignore[arg-type]
    expected = "dead" if exc_type in _PERMANENT else "retry"
    assert outcome.status == expected
    assert outcome.detail is not None and exc_type.__name__ in outcome.detail


def test_redirects_are_not_delivered() -> None:
    assert classify_response(httpx.Response(302, headers={"Location": "/elsewhere"})).status == "dead"


def test_kept_body_is_bounded() -> None:
    outcome = classify_response(httpx.Response(400, text="x" * (MAX_BODY_KEPT * 2)))
    assert outcome.detail is not None and len(outcome.detail) <= MAX_BODY_KEPT + len("HTTP 400: ")


def test_undecodable_body_is_kept_with_replacements() -> None:
    response = httpx.Response(422, content=b"bad \xff\xfe body", headers={"Content-Type": "text/plain"})
    outcome = classify_response(response)
    assert outcome.status == "dead" and outcome.detail is not None and "bad" in outcome.detail
