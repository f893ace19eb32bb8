"""Prometheus metrics: requests by route and status, latencies, upload bytes, and the job table at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from videopipe.db.repos import ops


class _Tables(Collector):
    """Videos by status and stage runs by stage and state, read when Prometheus scrapes."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Any]:
        videos = GaugeMetricFamily("videopipe_videos", "Videos by status", labels=["status"])
        runs = GaugeMetricFamily("videopipe_stage_runs", "Stage runs by stage and state", labels=["stage", "state"])
        with self.sessions() as s:  # every tenant's: /metrics is the operator's
            for status, n in ops.video_counts_all_tenants(s):
                videos.add_metric([status], n)
            for stage, state, n in ops.stage_run_counts_all_tenants(s):
                runs.add_metric([stage, state], n)
        yield videos
        yield runs


class Metrics:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "videopipe_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "videopipe_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.upload_bytes = Counter("videopipe_upload_bytes", "Bytes received in uploads", registry=self.registry)
        self.registry.register(_Tables(sessions))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
