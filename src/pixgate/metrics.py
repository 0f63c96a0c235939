"""Prometheus metrics, one registry per app so several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "pixgate_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "pixgate_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "pixgate_queue_depth", "Jobs waiting in the queue", registry=self.registry
        )
        self.images_generated = Counter(
            "pixgate_images_generated_total",
            "Images generated and charged",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "pixgate_batch_images",
            "Images in forward passes that batched more than one job",
            buckets=(2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "pixgate_jobs_finished_total",
            "Jobs seen finished by the API",
            ["model", "status"],
            registry=self.registry,
        )
        self.channel_requests = Counter(
            "pixgate_channel_requests_total",
            "Upstream channel calls, by outcome (ok, or the failure kind)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.channel_latency = Histogram(
            "pixgate_channel_request_duration_seconds",
            "Upstream channel call latency",
            ["channel"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.channel_state = Gauge(
            "pixgate_channel_state",
            "Channel state: 0 closed, 1 half-open or waiting out Retry-After, 2 open, 3 disabled",
            ["channel"],
            registry=self.registry,
        )
