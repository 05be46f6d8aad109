"""The OpenAPI document tells the truth: checked offline, then by Schemathesis on the stack.

The offline tests read the document the app builds. The integration test runs the
Schemathesis CLI (``schemathesis run --checks all``, the run the issue reproduced) against
the stack's API as a fresh user with scope ``posts:write``, with the configuration in
``schemathesis.toml`` and the hooks in ``schemathesis_hooks.py`` next to this file, and
requires 0 failures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import CommonSettings
from ingest_api.app import create_app
from ingest_api.auth import MAX_ID
from ingest_api.problems import PROBLEM_JSON
from tests.conftest import fresh_id, token

HERE = Path(__file__).parent
# examples per operation and phase: the whole run stays well under 90 s on 2 cores
MAX_EXAMPLES = 50
RUN_TIMEOUT_S = 300
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = create_app().openapi()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def test_every_error_is_a_documented_problem(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        for status, response in op["responses"].items():
            if status.startswith("2") or path == "/readyz":
                continue
            schema = response["content"][PROBLEM_JSON]["schema"]
            assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)
            assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
        if op.get("security"):
            assert "401" in op["responses"], (method, path)


def test_mutations_document_idempotency_and_throttling(document: dict[str, Any]) -> None:
    for method in ("post", "delete"):
        op = document["paths"]["/v1/posts/{post_id}/like"][method]
        assert {"200", "401", "404", "409", "410", "422", "429", "503"} <= set(op["responses"])
        assert "Idempotency-Key" in [p["name"] for p in op["parameters"]]
        assert "Idempotent-Replayed" in op["responses"]["200"]["headers"]
        assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    put = document["paths"]["/v1/posts/{post_id}"]["put"]["responses"]
    assert {"200", "201"} <= set(put)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}


def test_numeric_bounds_are_exact_integers(document: dict[str, Any]) -> None:
    """FastAPI's document model turns ``2**63 - 1`` into the float ``2**63``; not here."""
    found: list[object] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.extend(v for k, v in node.items() if k in _BOUNDS)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert found and all(type(v) is int for v in found), found
    assert MAX_ID in found


def _routed(method: str, path: str) -> httpx.Response:
    """A request through routing alone: no lifespan, so no store is touched."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, path)

    return asyncio.run(send())


def test_405_lists_every_method_of_the_path() -> None:
    r = _routed("PATCH", "/v1/posts/1/like")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, POST"
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert _routed("OPTIONS", "/v1/posts/1").headers["allow"] == "DELETE, PUT"
    assert _routed("POST", "/v1/posts/1/likes").headers["allow"] == "GET"


def _schemathesis(s: CommonSettings, report: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    user = fresh_id()
    env = {
        **os.environ,
        "LIKES_ST_TOKEN": token(s, user, "posts:write"),
        "LIKES_ST_USER": str(user),
        "LIKES_ST_POST_BASE": str(fresh_id()),
        "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py"),
    }
    command = [
        *(sys.executable, "-m", "schemathesis.cli"),
        *("--config-file", str(HERE / "schemathesis.toml"), "--no-color"),
        *("run", f"{s.api_url}/openapi.json", "--checks", "all"),
        *("--max-examples", str(MAX_EXAMPLES)),
        *("--report", "json", "--report-json-path", str(report)),
    ]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


@pytest.mark.integration
def test_schemathesis_all_checks_pass(stack: CommonSettings, tmp_path: Path) -> None:
    report = tmp_path / "schemathesis.json"
    run = _schemathesis(stack, report, cwd=tmp_path)  # its caches stay out of the tree
    output = run.stdout[-6000:] + run.stderr[-2000:]
    assert report.exists(), output
    result = json.loads(report.read_text())
    assert result["complete"] and result["errors"] == [], output
    assert result["failures"] == [], output
    assert run.returncode == 0, output
    operations = result["operations"]
    assert operations["tested"] == operations["total"] >= 12, operations
    assert result["test_cases"]["generated"] > 0, result["test_cases"]
