"""Calls to the embedded store's owner survive the owner dropping a request.

The owner (the analytics flow) can be restarted while an operator's command waits for an
answer (the watchdog, ``likes flows-reset``, a crash). A real socket server stands in
for it here: it takes requests and closes the connection without answering, as a
process that died mid-request does, then answers; or it answers with an error, which is
the caller's at once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from core.settings import CommonSettings
from ops import analytics


class _Owner:
    """Accepts connections on a free port and answers each request as ``script`` says,
    in turn (the last entry for every later request): ``None`` closes the connection
    unanswered; a status code answers with it, JSON ``answer`` on 200, an error else."""

    def __init__(self, script: list[int | None], answer: object) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.script, self.answer = script, answer
        self.raw: bytes | None = None  # an error answer's body as it is (default: JSON)
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(body)
                status = self.script[min(len(self.requests), len(self.script)) - 1]
                if status is None:
                    continue  # closed unanswered
                payload = json.dumps(
                    self.answer if status == 200 else {"error": "too many parts"}
                ).encode()
                if status != 200 and self.raw is not None:
                    payload = self.raw
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n".encode()
                    + f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
                    + payload
                )


@pytest.fixture
def owner() -> Iterator[_Owner]:
    server = _Owner([None, None, 200], answer={"columns": ["x"], "rows": [[1]]})
    yield server
    server.sock.close()


def test_a_query_the_owner_dropped_is_sent_again(owner: _Owner) -> None:
    s = CommonSettings(analytics_port=owner.port)
    assert analytics.query(s, "SELECT 1 AS x") == (["x"], [[1]])
    assert len(owner.requests) == 3
    assert {json.loads(r)["sql"] for r in owner.requests} == {"SELECT 1 AS x"}


def test_a_dropped_correction_is_repeated_as_the_same_rows(owner: _Owner) -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 12, 6, tzinfo=UTC)
    row = (7, start, start + timedelta(minutes=1), "repair:x", 1, 0, 1, 1)
    analytics.write_window_repairs(CommonSettings(analytics_port=owner.port), [row])
    sent = [json.loads(r) for r in owner.requests]
    assert len(sent) == 3 and sent[0] == sent[1] == sent[2]  # one part, collapsed by FINAL
    assert sent[0][0][3] == "repair:x"


def test_an_owner_that_never_answers_again_fails_clearly(
    owner: _Owner, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner.script = [None]
    monkeypatch.setattr(analytics, "OWNER_WAIT_S", 1.5)
    with pytest.raises(ValueError, match=r"dropped the request .*flow-analytics\.log"):
        analytics.query(CommonSettings(analytics_port=owner.port), "SELECT 1")
    assert len(owner.requests) >= 2


def test_a_failed_request_is_the_callers_error_at_once(owner: _Owner) -> None:
    """A 5xx is an answer: the owner already retried what the store refused for now
    (``insert_retrying``), so the request is not sent again on top of that."""
    owner.script = [500]
    with pytest.raises(ValueError, match="too many parts"):
        analytics.query(CommonSettings(analytics_port=owner.port), "SELECT 1")
    assert len(owner.requests) == 1


def test_an_answer_that_is_not_json_is_a_clear_error(owner: _Owner) -> None:
    """A bare 500 (an unexpected error in the owner: Starlette answers in plain text) is
    reported with its status, not as a JSON decoding error."""
    owner.script, owner.raw = [500], b"Internal Server Error"
    with pytest.raises(ValueError, match="answered 500: Internal Server Error"):
        analytics.query(CommonSettings(analytics_port=owner.port), "SELECT 1")
