"""Topics, subscriptions and fan-out.

Everything here runs on the server's event loop and never awaits, which is what
makes the subscribe seam exact: taking a snapshot (or reading the replay
range) and registering the subscriber happen in one step, so no event can be
published in between — the next event any subscriber receives after the
snapshot at sequence *n* is *n + 1*.

Fan-out encodes nothing: each event was encoded once when it was appended
(:class:`~rtnb.server.storage.LogRecord`), and the same text is queued for every
subscriber.

Publishing is a group commit (``docs/durability.md``): ``publish`` *stages* an
event (its sequence, id, token and frame are fixed, nothing is visible yet)
and queues it for the committer task. The committer takes every event staged
since its last round, has the storage write them in one transaction (in a
worker thread, while the next group accumulates), and only then — on the loop,
without awaiting in between — commits them to the topic logs and fans them
out. ``await hub.committed()`` after a ``publish`` returns once that event is
durable and delivered to the subscribers' queues: that is when ``POST
/publish``, ``srv.publish`` and ``POST /mutate`` answer. Snapshots, replays,
heartbeats and ``truth`` read committed state only (the high watermark).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from ..protocol.codec import encode_str
from ..protocol.errors import RtnbError
from ..protocol.frames import Error, Event, Heartbeat, Subscribed
from .auth import Identity, role_rank
from .chaos import Chaos
from .config import ServerConfig
from .idempotency import IdemKey, Keys, Remembered, digest
from .redis_store import Bridge, RedisStorage
from .session import Item, Session, now
from .snapshots import SnapshotStream
from .staged import Staged
from .storage import Key, LogRecord, LogStorage
from .tokens import ReplayTokens
from .topiclog import Fetched, TopicLog

logger = logging.getLogger("rtnb.server")
#: Topic names an ``unknown_topic`` error lists at most: 20.
MAX_LISTED_TOPICS: Final = 20
_RECORD: Final = operator.attrgetter("record")
_TEXT: Final = operator.attrgetter("text")
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def validate_publish(topic: str, event_type: str, entity_id: str) -> None:
    """Refuse what the wire protocol could not carry (ValueError: a caller's mistake)."""
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise ValueError(f"topic {topic!r}: use 1-128 of A-Z a-z 0-9 _ . : - (letter/digit first)")
    for name, value in (("type", event_type), ("entity_id", entity_id)):
        if not isinstance(value, str) or not 1 <= len(value) <= 1024:
            raise ValueError(f"{name} must be a non-empty string of at most 1024 characters")


def error_text(code: str, message: str, topic: str | None = None) -> str:
    return encode_str(Error(code=code, message=message, topic=topic))


class TopicError(RtnbError):
    """A topic cannot be used by this identity: ``code`` is the wire error code."""

    def __init__(self, code: str, message: str, topic: str) -> None:
        self.code = code
        self.message = message
        self.topic = topic
        super().__init__(message)

    def frame(self) -> str:
        return error_text(self.code, self.message, self.topic)


class StorageFailed(RtnbError, RuntimeError):
    """The store could not commit: nothing staged since is acknowledged or delivered."""

    code = "unavailable"


class OutcomeUnknown(StorageFailed):
    """The store did not answer a write it may have run (a timeout, a cut link): the events
    may be stored. Nothing is acknowledged; a retry with the same key is safe."""

    code = "outcome_unknown"


class Hub:
    """The logs of every (tenant, topic) and who is subscribed to them."""

    def __init__(
        self,
        config: ServerConfig,
        storage: LogStorage,
        tokens: ReplayTokens,
        chaos: Chaos,
        declared: dict[str, str],
        remembered: Remembered | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.tokens = tokens
        self.chaos = chaos
        self.declared = declared  # topic -> minimum role, every tenant; shared with the handle
        self.tenant_topics: set[Key] = set()  # (tenant, topic) published to: viewer, that tenant
        self.logs: dict[Key, TopicLog] = {}
        self.sessions: set[Session] = set()
        self._subs: dict[Key, dict[Session, None]] = {}
        self.published = 0
        self.failed: StorageFailed | None = None
        self._staged: list[Staged] = []  # waiting for the committer's next round
        self._staged_done: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None  # the round being written
        self._wakeup: asyncio.Event | None = None
        self.bridge: Bridge | None = None
        # Committed idempotency keys (they survive restarts: the handle owns them) and
        # those of events staged but not committed yet (idempotency.py).
        self.keys = Keys(
            remembered
            or Remembered(max_bytes=config.idempotency_bytes, window=config.idempotency_window),
            tokens,
        )
        if isinstance(storage, RedisStorage):  # several gateways share the log (redis_store.py)
            self.bridge = Bridge(self, storage)
        for key in storage.streams():
            self.tenant_topics.add(key)
            self.log(*key)

    # -- topics ------------------------------------------------------------------

    def declare(self, topic: str, role: str = "viewer") -> None:
        role_rank(role)  # KeyError on unknown roles
        self.declared[topic] = role

    def log(self, tenant: str, topic: str) -> TopicLog:
        key = (tenant, topic)
        topic_log = self.logs.get(key)
        if topic_log is None:
            topic_log = TopicLog(
                tenant,
                topic,
                self.storage,
                self.tokens,
                retention=self.config.retention,
                max_frame_size=self.config.max_frame_size,
            )
            self.logs[key] = topic_log
        return topic_log

    def exists(self, tenant: str, topic: str) -> bool:
        """Declared for every tenant, or published to by this one."""
        return topic in self.declared or (tenant, topic) in self.tenant_topics

    def topics_text(self, identity: Identity) -> str:
        """The topics ``identity`` may read, for an ``unknown_topic`` message (a misspelling
        shows its fix): its tenant's and the declared ones, never another tenant's."""
        names = {t for (tenant, t) in self.tenant_topics if tenant == identity.tenant}
        names |= {t for t, r in self.declared.items() if role_rank(identity.role) >= role_rank(r)}
        if not names:
            return "this tenant has no topics yet"
        listed = sorted(names)
        more = (
            f" and {len(listed) - MAX_LISTED_TOPICS} more"
            if len(listed) > MAX_LISTED_TOPICS
            else ""
        )
        return "topics: " + ", ".join(listed[:MAX_LISTED_TOPICS]) + more

    def check(self, identity: Identity, topic: str) -> TopicLog:
        """The tenant's log for ``topic`` if this identity may read it, else TopicError.

        Topic existence is per tenant: a topic published by one tenant stays
        ``unknown_topic`` for the others (names must not leak across tenants)
        unless it is declared (``serve(topics=...)``, ``srv.declare``). With Redis,
        ``unavailable`` if the preload just made could not reach it.
        """
        role = self.declared.get(topic)
        key = (identity.tenant, topic)
        bridge = self.bridge
        if bridge is not None and key not in self.logs:
            why = bridge.unreachable(key)  # the preload just made could not reach Redis
            if why is not None:
                raise TopicError("unavailable", why, topic)
        if (
            role is None
            and key not in self.tenant_topics
            and bridge is not None
            and bridge.exists(key)  # created through another gateway (preloaded: no I/O)
        ):
            self.tenant_topics.add(key)
        if role is None and key in self.tenant_topics:
            role = "viewer"
        if role is None:
            raise TopicError(
                "unknown_topic",
                f"topic {topic!r} does not exist; {self.topics_text(identity)}; "
                "a topic exists once something is published to it (or it is declared)",
                topic,
            )
        if role_rank(identity.role) < role_rank(role):
            raise TopicError(
                "forbidden",
                f"topic {topic!r} needs role {role!r} or above; this token has {identity.role!r}",
                topic,
            )
        return self.log(identity.tenant, topic)

    # -- publishing ----------------------------------------------------------------

    def publish(
        self,
        tenant: str,
        topic: str,
        event_type: str,
        payload: Mapping[str, Any],
        entity_id: str,
        *,
        occurred_at: datetime | None = None,
        version: int = 1,
        key: IdemKey | None = None,
    ) -> Event:
        """Stage an event for (tenant, topic) — creating it for that tenant — to commit next.

        The event is visible (fanned out, in snapshots and ``truth``) only once
        committed; ``await self.committed()`` waits for that. Raises
        :class:`~rtnb.server.topiclog.TooLarge` (a ValueError) for an event no
        client could receive, and :class:`StorageFailed` once the store failed.
        ``key``: its idempotency key (the caller asked ``keys.recall`` first); the key is
        stored with the event, in the same atomic step.
        """
        if self.failed is not None:
            raise self.failed
        topic_log = self.log(tenant, topic)
        staged = topic_log.stage(
            event_type, payload, entity_id, occurred_at=occurred_at, version=version
        )
        if key is not None:
            self.keys.stage(staged, key, self.storage)
        self.tenant_topics.add((tenant, topic))
        self._staged.append(staged)
        if self._wakeup is not None:
            self._wakeup.set()
        return staged.event

    def enqueue(self, tenant: str, topic: str, staged: list[Staged]) -> None:
        """Queue events staged in bulk (``bulk.py``) for the committer's next round."""
        if not staged:
            return
        self.tenant_topics.add((tenant, topic))
        self._staged.extend(staged)
        if self._wakeup is not None:
            self._wakeup.set()

    def publish_once(
        self,
        tenant: str,
        topic: str,
        event_type: str,
        payload: Mapping[str, Any],
        entity_id: str,
        publish_id: str | None,
        *,
        occurred_at: datetime | None = None,
        version: int = 1,
    ) -> tuple[Event, bool]:
        """:meth:`publish` with an optional ``publishId``; also whether it is committed.

        A ``publish_id`` already stored answers the original event (committed) and stores
        nothing; one staged and not committed yet answers that staged event.
        """
        key = None
        if publish_id is not None:
            content = digest(topic, event_type, entity_id, payload, version)
            key = IdemKey.of((tenant, topic), publish_id, content)
            found = self.keys.recall(key, topic, entity_id, payload, version)
            if found is not None:
                return found
        event = self.publish(
            tenant,
            topic,
            event_type,
            payload,
            entity_id,
            occurred_at=occurred_at,
            version=version,
            key=key,
        )
        return event, False

    def committed(self) -> asyncio.Future[None]:
        """A future done once everything staged so far is durable and fanned out.

        It fails with :class:`StorageFailed` if the store could not commit it.
        """
        if self._staged:
            if self._staged_done is None:
                self._staged_done = asyncio.get_running_loop().create_future()
            return asyncio.shield(self._staged_done)
        if self._writing is not None:
            return asyncio.shield(self._writing)
        done = asyncio.get_running_loop().create_future()
        if self.failed is not None:
            done.set_exception(self.failed)
        else:
            done.set_result(None)
        return done

    async def run_committer(self) -> None:
        """Commit staged events in groups: one write (one fsync) per round, then fan out."""
        self._wakeup = wakeup = asyncio.Event()
        while True:
            if not self._staged:
                wakeup.clear()
                await wakeup.wait()
                continue
            try:
                await self._commit_round()
            except Exception as exc:  # a bug, not a storage error: fail loudly, never hang
                logger.exception("rtnb committer failed")
                self._fail(exc, [], asyncio.get_running_loop().create_future())

    async def _commit_round(self) -> None:
        staged, self._staged = self._staged, []
        done, self._staged_done = self._staged_done, None
        if done is None:
            done = asyncio.get_running_loop().create_future()
        self._writing = done
        if self.bridge is not None:
            await self._commit_sequenced(staged, done)
            return
        try:
            pending = self.storage.take()
            if pending is not None:
                await asyncio.to_thread(self.storage.write, pending)
        except Exception as exc:
            self._fail(exc, staged, done)
            return
        finally:
            self._writing = None
        # No await from here to the end: commit and fan-out are one step. Per run of one
        # topic's events (a publish_many batch is one): commit in one pass, then one push
        # of the run per subscriber.
        keys, at = self.keys, time.time()
        i, n = 0, len(staged)
        while i < n:
            topic_log = staged[i].log
            j = i + 1
            while j < n and staged[j].log is topic_log:
                j += 1
            run = staged if j - i == n else staged[i:j]
            topic_log.commit_many(run)
            self._fan_out_many(topic_log.key, list(map(_RECORD, run)))
            keys.commit_many(run, at)
            i = j
        self.published += len(staged)
        if not done.done():
            done.set_result(None)

    async def _commit_sequenced(self, staged: list[Staged], done: asyncio.Future[None]) -> None:
        """A sequenced store (Redis) assigns the sequences: commit what it answered.

        If Redis cannot be reached, this round fails (503 / RuntimeError to the
        publishers, nothing of it acknowledged) but the gateway does not give up:
        the next round tries again.
        """
        assert self.bridge is not None
        try:
            await self.bridge.commit(staged)
        except Exception as exc:
            # A timeout or a cut link after the script was sent: Redis may have run it.
            logger.error("rtnb redis: append failed (%s); its outcome is unknown", exc)
            for item in staged:
                item.log.settle(item)
            if not done.done():
                done.set_exception(
                    OutcomeUnknown(
                        f"the Redis store did not confirm the write ({type(exc).__name__}): it "
                        "may have been published; retry with the same publishId (or "
                        "clientMutationId), which is safe — a retry without one may publish "
                        "it twice"
                    )
                )
                done.exception()
            return
        finally:
            self._writing = None
            self.keys.forget(staged)
        self.published += len(staged)
        if not done.done():
            done.set_result(None)

    def resolve(self, event: Event) -> Event:
        """The committed event for one ``publish`` returned (a sequenced store renumbers).

        Raises :class:`~rtnb.server.idempotency.IdempotencyConflict` if the shared store
        found its key used for other content (another gateway stored it meanwhile).
        """
        if self.bridge is None:
            return event
        final = self.bridge.resolve(event)
        if isinstance(final, Exception):
            raise final
        assert isinstance(final, Event)
        return final

    def _fail(self, exc: Exception, staged: list[Staged], done: asyncio.Future[None]) -> None:
        logger.error("rtnb storage: commit failed (%s); refusing publishes until restart", exc)
        self.failed = StorageFailed(
            f"the store failed to commit ({type(exc).__name__}); nothing since was acknowledged "
            "— fix the storage and restart the server"
        )
        for topic_log in {item.log for item in (*staged, *self._staged)}:
            topic_log.abandon()
        self.keys.forget((*staged, *self._staged))
        self._staged.clear()
        for future in (done, self._staged_done):
            if future is not None and not future.done():
                future.set_exception(self.failed)
                future.exception()  # retrieved: nobody may be waiting
        self._staged_done = None

    async def drain(self) -> None:
        """Wait until everything staged is committed (or failed); for shutdown."""
        while self._staged or self._writing is not None:
            if self._wakeup is None:  # no committer running: commit inline
                await self._commit_round()
                continue
            with contextlib.suppress(StorageFailed):
                await self.committed()

    def _fan_out(self, key: Key, record: LogRecord) -> None:
        subs = self._subs.get(key)
        if not subs:
            return
        if self.chaos.active:
            deliver = self.chaos.deliver
            for session in tuple(subs):
                deliver(session, record)
        else:
            for session in tuple(subs):
                session.push(record)

    def _fan_out_many(self, key: Key, records: list[LogRecord]) -> None:
        """:meth:`_fan_out` of each record in order: one push of the run per subscriber."""
        subs = self._subs.get(key)
        if not subs:
            return
        if self.chaos.active:
            for record in records:
                self._fan_out(key, record)
            return
        texts = list(map(_TEXT, records))
        if all(map(str.isascii, texts)):
            nbytes = sum(map(len, texts))
        else:
            nbytes = sum(len(text) if text.isascii() else len(text.encode()) for text in texts)
        for session in tuple(subs):
            session.push_run(records, nbytes)

    # -- subscriptions ---------------------------------------------------------------

    def attach(self, session: Session) -> None:
        self.sessions.add(session)

    def detach(self, session: Session) -> None:
        self.sessions.discard(session)
        for topic_log in session.subscriptions.values():
            subs = self._subs.get(topic_log.key)
            if subs is not None:
                subs.pop(session, None)
        session.subscriptions.clear()
        session.catchup.clear()

    def subscribe(
        self,
        session: Session,
        topic: str,
        replay_from: str | None,
        fetched: Fetched | None = None,
    ) -> str:
        """Subscribe: queue ``subscribed``, then a snapshot or the replay; go live.

        ``fetched``: the replay range a sequenced store read just before
        (:meth:`prefetch`). Returns the replay status. Raises :class:`TopicError`
        for a refused topic.
        """
        assert session.identity is not None
        topic_log = self.check(session.identity, topic)
        if (
            topic not in session.subscriptions
            and len(session.subscriptions) >= self.config.max_subscriptions
        ):
            raise TopicError(
                "too_many_subscriptions",
                f"a connection may hold at most {self.config.max_subscriptions} subscriptions; "
                "unsubscribe from one first",
                topic,
            )
        status = "none"
        records: list[LogRecord] = []
        if replay_from is not None:
            status, records, why = topic_log.replay(replay_from, fetched)
            if status == "unavailable":
                logger.info("session %d: replay of %r unavailable: %s", session.id, topic, why)
        subscribed = Subscribed(
            topic=topic,
            replay=status,  # type: ignore[arg-type]
            latest_token=topic_log.token(),
            latest_sequence=topic_log.latest,
        )
        run: list[Item] = [encode_str(subscribed)]
        if status != "complete":  # sent part by part as the client takes them (snapshots.py)
            run.append(SnapshotStream(topic_log))
        session.push_many(run)  # one run: the byte limit sees it whole (session.py)
        if not session.closed:  # not cut by that run
            # Re-subscribing (e.g. to fill a gap) replaces the old registration.
            self.watch(session, topic_log)
            # The replay: queued as the client reads it, then live (catchup.py).
            session.catch_up(topic_log, records, fetched=fetched is not None)
        return status

    async def preload(self, who: Identity, topic: str) -> None:
        """With Redis, load a topic new to this gateway on the loop (never a blocking call).

        If Redis does not answer, the synchronous :meth:`check` that follows answers
        ``unavailable`` (an error frame, a 503) without asking Redis again.
        """
        if self.bridge is None:
            return
        try:
            await self.bridge.preload((who.tenant, topic))
        except Exception as exc:
            logger.warning("rtnb redis: topic %r not preloaded (%s)", topic, exc)

    def loading(self, tenant: str, topic: str) -> asyncio.Task[None] | None:
        """:meth:`prepare_publish` as a task, or None if there is nothing to load."""
        if self.bridge is None or (tenant, topic) in self.logs:
            return None
        return asyncio.ensure_future(self.prepare_publish(tenant, topic))

    async def prepare_publish(self, tenant: str, topic: str) -> None:
        """With Redis, load a topic new to this gateway before a publish stages on it.

        Staging is synchronous (it fixes nothing Redis has not seen: the committer's
        script assigns the sequence), so the topic's mirror must be in memory first;
        loading it here, on the loop's asyncio client, keeps the loop free. Raises
        :class:`StorageFailed` if Redis cannot be reached (nothing was staged).
        """
        if self.bridge is None or (tenant, topic) in self.logs:
            return
        try:
            await self.bridge.preload((tenant, topic), check=False)
        except Exception as exc:
            raise StorageFailed(
                f"the Redis store could not load topic {topic!r} ({type(exc).__name__}); "
                "nothing was published — retry once Redis is reachable"
            ) from None

    async def prefetch(self, who: Identity, topic: str, replay_from: str | None) -> Fetched | None:
        """With Redis, load the topic and read the replay range (``XRANGE``) before subscribing.

        On the loop's asyncio client: the synchronous subscribe that follows finds
        everything it needs in memory.
        """
        if self.bridge is None:
            return None
        await self.preload(who, topic)
        if replay_from is None:
            return None
        fetched: Fetched | None = await self.bridge.fetch_for(who, topic, replay_from)
        return fetched

    def watch(self, session: Session, topic_log: TopicLog) -> None:
        """Deliver ``topic_log``'s live events to ``session`` from now on."""
        session.subscriptions[topic_log.topic] = topic_log
        self._subs.setdefault(topic_log.key, {})[session] = None

    def unsubscribe(self, session: Session, topic: str) -> None:
        topic_log = session.subscriptions.pop(topic, None)
        session.stop_catch_up(topic)
        if topic_log is not None:
            self._subs.get(topic_log.key, {}).pop(session, None)

    def subscriber_count(self, tenant: str, topic: str) -> int:
        return len(self._subs.get((tenant, topic), ()))

    # -- heartbeats --------------------------------------------------------------------

    @staticmethod
    def heartbeat(subs: Mapping[str, TopicLog], session: Session | None = None) -> str:
        """A heartbeat frame with the latest token and sequence of each given topic.

        For a topic ``session`` is still catching up on, the last event queued for it
        (``catchup.py``): the client has all of it by the time it reads the heartbeat,
        so it sees no tail gap and does not re-subscribe in the middle of the replay.
        """
        topics = {t: lg.token() for t, lg in subs.items()}
        sequences = {t: lg.latest for t, lg in subs.items()}
        if session is not None and session.catchup:
            for topic in session.catchup.keys() & topics.keys():
                position = session.position(topic)
                if position is not None:
                    topics[topic], sequences[topic] = position
        return encode_str(Heartbeat(server_time=now(), topics=topics, sequences=sequences))

    def heartbeat_all(self) -> None:
        if self.chaos.heartbeats_stalled():
            self.chaos.count("heartbeats_skipped", len(self.sessions))
            return
        for session in tuple(self.sessions):
            if session.identity is not None and session.kind != "poll":
                session.push(self.heartbeat(session.subscriptions, session))

    async def run_heartbeats(self) -> None:
        interval = self.config.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            self.heartbeat_all()

    # -- truth -----------------------------------------------------------------------

    def truth(self, tenant: str, topic: str) -> dict[str, dict[str, Any]]:
        topic_log = self.logs.get((tenant, topic))
        if topic_log is None:
            return {}
        # A deep copy, in JSON types: exactly what a client decodes.
        copied: dict[str, dict[str, Any]] = msgspec.json.decode(
            msgspec.json.encode(topic_log.entities)
        )
        return copied
