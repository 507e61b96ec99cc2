"""What one request measured: the record the runner produces and the report consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestResult:
    """One request, times in seconds from the start of the run (``offset_s``) or durations.

    ``error`` is set when no HTTP response came back (refused, reset, timed out); a response
    with any status code is a result, as in hey. Phases follow hey's "Details":
    ``conn_s`` DNS + dial (0 on a reused keep-alive connection), ``dns_s``, ``req_write_s``
    until the request was written, ``resp_wait_s`` until the response headers,
    ``resp_read_s`` reading the body. ``ttft_s`` and ``itl_s`` exist only for streamed
    responses: the first content chunk, and the gaps between later content chunks.
    """

    index: int
    offset_s: float
    scheduled_s: float | None = None
    duration_s: float = 0.0
    status: int | None = None
    error: str | None = None
    size_bytes: int = 0
    conn_s: float = 0.0
    dns_s: float = 0.0
    req_write_s: float = 0.0
    resp_wait_s: float = 0.0
    resp_read_s: float = 0.0
    streamed: bool = False
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    content_chunks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def ok(self) -> bool:
        """An HTTP response with a 2xx status."""
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def output_tokens(self) -> int | None:
        """``usage.completion_tokens``, else (streaming without usage) the content chunks."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return self.content_chunks if self.streamed and self.content_chunks else None
