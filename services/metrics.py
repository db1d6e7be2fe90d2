"""Prometheus metrics, one registry per app (no import-time state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sockets = Gauge(
            "lifeline_sockets_connected",
            "Connected sockets on this node",
            ["namespace"],
            registry=r,
        )
        self.events_in = Counter(
            "lifeline_events_in_total", "Socket.IO events received", ["event"], registry=r
        )
        self.events_out = Counter(
            "lifeline_events_out_total",
            "Socket.IO events emitted (one per fan-out)",
            ["event"],
            registry=r,
        )
        self.unknown_events = Counter(
            "lifeline_unknown_events_total", "Events with no handler", ["namespace"], registry=r
        )
        self.ack_latency = Histogram(
            "lifeline_ack_latency_seconds",
            "Time from an event's arrival to its ack",
            ["event"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.errors = Counter(
            "lifeline_errors_total",
            "Errors answered, by code and door",
            ["code", "door"],
            registry=r,
        )
        self.http_requests = Counter(
            "lifeline_http_requests_total",
            "HTTP requests",
            ["route", "method", "status"],
            registry=r,
        )
        self.bus_errors = Counter(
            "lifeline_bus_errors_total", "Peer bus failures", ["kind"], registry=r
        )
        self.bus_messages = Counter(
            "lifeline_bus_messages_total",
            "Peer bus messages this node received: for its rooms (interest), for every "
            "node (node-wide), or its own echo",
            ["kind"],
            registry=r,
        )
        self.bus_channels = Gauge(
            "lifeline_bus_channels",
            "Interest channels (rooms, users, projects) this node is subscribed to",
            registry=r,
        )
        self.connections_refused = Counter(
            "lifeline_connections_refused_total",
            "Socket connections refused",
            ["reason"],
            registry=r,
        )

        self.deliveries = Counter(
            "lifeline_deliveries_total",
            "SMS, push and email delivery outcomes (sent, failed, retry, skipped)",
            ["channel", "status"],
            registry=r,
        )
        self.sos_escalations = Counter(
            "lifeline_sos_escalations_total",
            "SOS escalations sent, by level",
            ["level"],
            registry=r,
        )

        self.kafka_records = Counter(
            "lifeline_kafka_records_total",
            "Kafka records consumed, by outcome (applied, duplicate, dead_letter, retry)",
            ["topic", "outcome"],
            registry=r,
        )
        self.kafka_lag = Gauge(
            "lifeline_kafka_consumer_lag",
            "Records behind the end of each assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.kafka_produced = Counter(
            "lifeline_kafka_produced_total", "Outbox events produced to Kafka", registry=r
        )

        self.archive_moved = Counter(
            "lifeline_archive_rows_moved_total",
            "Rows moved from PostgreSQL to the MongoDB archive",
            ["table"],
            registry=r,
        )
        self.archive_bytes = Counter(
            "lifeline_archive_bytes_moved_total",
            "Bytes of rows (as JSON) moved from PostgreSQL to the MongoDB archive",
            ["table"],
            registry=r,
        )
        self.archive_lag = Gauge(
            "lifeline_archive_lag_seconds",
            "How far past the hot window the oldest row still in PostgreSQL is",
            ["table"],
            registry=r,
        )

        self._children: dict[tuple[int, str], Any] = {}

    def child(self, metric: Any, label: str) -> Any:
        """``metric.labels(label)``, cached (labels() is costly on a per-event path).

        Event names can come from outside (``POST /publish``), so past 200 distinct
        labels per metric the rest count as ``other``: no unbounded series.
        """
        key = (id(metric), label)
        found = self._children.get(key)
        if found is None:
            if sum(1 for k in self._children if k[0] == id(metric)) >= 200:
                return self.child(metric, "other") if label != "other" else metric.labels(label)
            found = self._children[key] = metric.labels(label)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
