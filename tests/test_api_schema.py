"""schemathesis, driven by the app's own OpenAPI schema, against the real app over HTTP: no 5xx, and every
answer matches the schema (status codes, content types, headers, bodies)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from tests.support.servers import POSTGRES_ADMIN_URL, live_server
from videopipe.config import LimitSettings, Settings
from videopipe.db.migrate import upgrade
from videopipe.services import open_services
from videopipe.testing.databases import scratch_database


@schemathesis.serializer("application/offset+octet-stream")
def _tus_bytes(ctx: Any, value: Any) -> bytes:
    """tus PATCH bodies are raw bytes, like application/octet-stream."""
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data = tmp_path_factory.mktemp("schema-data")
    with scratch_database(POSTGRES_ADMIN_URL, "vp_schema") as url:
        upgrade(url)
        settings = Settings(data_dir=data, database_url=url, vlm="none",
                            limits=LimitSettings(max_file_bytes=1024 * 1024))  # fmt: skip
        pipeline = open_services(settings)
        key = pipeline.keys.create("fuzz")[1]
        with live_server(create_app(pipeline)) as base:
            yield base, key
        pipeline.sessions.kw["bind"].dispose()


def test_api_conforms_to_its_schema(served: tuple[str, str]) -> None:
    base, key = served
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def check(case: Any) -> None:
            # Every default check but "schema-valid data is accepted": a schema cannot say "these bytes are a
            # decodable video", so well-formed uploads of random bytes are rightly refused with 415/422.
            case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {key}"},
                                   excluded_checks=[positive_data_acceptance])  # fmt: skip

        try:
            check()
        except Exception as exc:  # collect every operation's failures, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    # It really ran: hundreds of generated requests reached the app, and none got a 5xx.
    metrics = httpx.get(f"{base}/metrics").text
    counts = [line for line in metrics.splitlines() if line.startswith("videopipe_http_requests_total{")]
    total = sum(float(line.rsplit(" ", 1)[1]) for line in counts)
    assert total >= 10 * len(operations), total
    assert not [line for line in counts if 'status="5' in line]
    patched = [line for line in counts if 'method="PATCH"' in line]
    assert patched, "no tus PATCH was sent"
