"""Prometheus metrics of one daemon, in a registry of its own (several apps may share a process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("dada_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram("dada_request_seconds", "Time to answer", ["endpoint"], registry=r,
                                 buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.frames = Counter("dada_frames_read", "Detector frames read", registry=r)
        self.bytes_out = Counter("dada_response_bytes", "Bytes of response bodies", ["endpoint"], registry=r)
        self.in_flight = Gauge("dada_requests_in_flight", "Requests being computed", registry=r)
        self.result_hits = Counter("dada_result_cache_hits", "Answers whose arrays came from the result cache",
                                   registry=r)
        self.not_modified = Counter("dada_not_modified", "Answers saved by If-None-Match", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
