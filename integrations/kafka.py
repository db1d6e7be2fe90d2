"""Kafka through aiokafka: the consumers of other services' events, the outbox producer.

Consumption: one consumer group per deployment, so each record is handled by
one node. Records of a partition are applied in order (a key's events stay in
order); a partition's offset is committed only after its records are applied,
and applying is idempotent per ``event_id``, so a crash in between replays
harmlessly. A record that is not JSON, lacks the envelope or has an unknown
type goes to ``<topic>.dlq`` with the error and is skipped. A store outage
stops the partition at that record and retries it; a broker outage stalls
everything, ``ready`` turns false, and aiokafka reconnects by itself.

Production: rows of the ``outbox`` table, written in the transaction of what
they report, are sent in order and marked sent once the broker has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.errors import Invalid
from services.events import EventService
from services.metrics import Metrics
from storage.db import Database
from storage.errors import as_app_error
from storage.events import Outbox, OutboxRecord

__all__ = ["KafkaBridge"]

log = logging.getLogger(__name__)


class KafkaBridge:
    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topics: list[str],
        out_topic: str,
        events: EventService,
        outbox: Outbox,
        db: Database,
        metrics: Metrics,
        create_topics: bool = False,
        partitions: int = 3,
        retry_s: float = 1.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._topics = topics
        self._out_topic = out_topic
        self._events = events
        self._outbox = outbox
        self._db = db
        self._metrics = metrics
        self._create_topics = create_topics
        self._partitions = partitions
        self._retry_s = retry_s
        self._producer: AIOKafkaProducer | None = None
        self._broker_up = False
        self._outbox_wake = asyncio.Event()

    # -- readiness ---------------------------------------------------------------------------

    def ready(self) -> bool:
        return self._broker_up

    def kick_outbox(self) -> None:
        self._outbox_wake.set()

    # -- lifetime -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume, produce and watch the broker until cancelled, restarting on failure."""
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._broker_up = False
                log.warning("kafka session ended; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(self._retry_s)

    async def _session(self) -> None:
        if self._create_topics:
            await self._ensure_topics()
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", request_timeout_ms=10_000
        )
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=100,
        )
        async with contextlib.AsyncExitStack() as stack:
            # Registered before start(): a start cut short (cancelled, broker gone) still closes.
            stack.push_async_callback(_quietly, producer.stop)
            await producer.start()
            stack.push_async_callback(_quietly, consumer.stop)
            await consumer.start()
            self._producer = producer
            self._broker_up = True
            tasks = [
                asyncio.create_task(self._consume(consumer), name="kafka-consume"),
                asyncio.create_task(self._publish_outbox(), name="kafka-outbox"),
                asyncio.create_task(self._watch(producer, consumer), name="kafka-watch"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                self._producer = None
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _ensure_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [*self._topics, *(t + ".dlq" for t in self._topics), self._out_topic]
            missing = [t for t in wanted if t not in existing]
            if missing:
                await admin.create_topics([NewTopic(t, self._partitions, 1) for t in missing])
        finally:
            await admin.close()

    async def _watch(self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer) -> None:
        """Ask the broker for metadata every few seconds: readiness and consumer lag."""
        while True:
            try:
                await asyncio.wait_for(producer.client.fetch_all_metadata(), 5)
                self._broker_up = True
            except Exception:
                self._broker_up = False
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                if high is None:
                    continue
                with contextlib.suppress(Exception):
                    lag = max(0, high - await consumer.position(tp))
                    self._metrics.kafka_lag.labels(tp.topic, str(tp.partition)).set(lag)
            await asyncio.sleep(2)

    # -- consuming ----------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                await self._apply_partition(consumer, tp, records)

    async def _apply_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        for record in records:
            while True:
                try:
                    await self._apply(record)
                    break
                except _Retry:
                    # Our store is down: hold this partition here until it answers.
                    await asyncio.sleep(self._retry_s)
        await consumer.commit({tp: records[-1].offset + 1})

    async def _apply(self, record: ConsumerRecord) -> None:
        topic = record.topic
        try:
            data = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            await self._dead_letter(record, "not valid JSON")
            return
        try:
            applied = await self._events.apply(data, source=f"kafka:{topic}")
        except Invalid as exc:
            await self._dead_letter(record, exc.message)
            return
        except Exception as exc:
            error = as_app_error(exc)
            if error.code == "unavailable":
                self._metrics.kafka_records.labels(topic, "retry").inc()
                raise _Retry() from exc
            log.exception("applying a kafka record failed", extra={"topic": topic})
            await self._dead_letter(record, f"internal error: {type(exc).__name__}")
            return
        self._metrics.kafka_records.labels(topic, "applied" if applied else "duplicate").inc()

    async def _dead_letter(self, record: ConsumerRecord, error: str) -> None:
        self._metrics.kafka_records.labels(record.topic, "dead_letter").inc()
        log.warning(
            "kafka record dead-lettered",
            extra={"topic": record.topic, "offset": record.offset, "error": error},
        )
        assert self._producer is not None
        value = record.value or b""
        await self._producer.send_and_wait(
            record.topic + ".dlq",
            orjson.dumps(
                {
                    "error": error,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "value": value.decode("utf-8", errors="replace"),
                }
            ),
            key=record.key,
            headers=[("error", error.encode()[:500])],
        )

    # -- producing ----------------------------------------------------------------------------

    async def _publish_outbox(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_wake.wait(), 0.5)
            self._outbox_wake.clear()
            while await self._relay() > 0:
                pass

    async def _relay(self) -> int:
        """Produce the oldest unpublished outbox rows; marked only once the broker has
        them (if producing fails, the transaction rolls back and the next round retries)."""
        async with self._db.transaction() as conn:
            records = await self._outbox.take_pending(conn)
            if records:
                await self._send(records)
                await self._outbox.mark_published(conn, records)
        return len(records)

    async def _send(self, records: list[OutboxRecord]) -> None:
        assert self._producer is not None
        futures = [
            await self._producer.send(
                r.topic, r.value, key=r.key.encode() if r.key is not None else None
            )
            for r in records
        ]
        await asyncio.gather(*futures)
        self._metrics.kafka_produced.inc(len(records))


async def _quietly(stop: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(Exception):
        await stop()


class _Retry(Exception):
    """The record could not be applied for now; try it again."""
