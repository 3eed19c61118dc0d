"""Prometheus metrics of one daemon, in a registry of its own (several apps may share a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


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

    def watch_cache(self, stats: Callable[[], dict[str, dict[str, int]]]) -> None:
        """Export the caches' counters per level (memory, disk, aerospike, answers) as they are at scrape time."""

        class CacheCollector(Collector):
            def collect(self) -> Iterable[GaugeMetricFamily]:
                g = GaugeMetricFamily("dada_cache", "Result cache counters per level", labels=["level", "counter"])
                for level, counters in stats().items():
                    for name, value in counters.items():
                        g.add_metric([level, name], value)
                yield g

        self.registry.register(CacheCollector())

    def watch_restarts(self, restarts: Callable[[], int]) -> None:
        """Export how often the embedded default restarted a local node that died."""
        g = Gauge("dada_local_node_restarts", "Local nodes started again after they died", registry=self.registry)
        g.set_function(restarts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
