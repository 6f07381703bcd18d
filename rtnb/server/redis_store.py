"""Topic logs in Redis Streams, shared by several gateway processes (``docs/redis.md``).

Each gateway keeps a *mirror* of every topic it knows (the newest
:data:`MIRROR_TAIL` events and the entities' states, like
:class:`~rtnb.server.storage.MemoryStorage`); Redis is the source of truth and
the only place sequences are assigned. Replays read Redis (``XRANGE`` from the
token's position, :meth:`Bridge.fetch`). Appends, the live channel, replays,
mutation claims and loading a topic new to the gateway (a request naming it, the
first publish to it, a reload) go through the gateway's ``redis.asyncio`` client on
its event loop, through a bounded pool (:data:`POOL_SIZE`). Only startup (before the
gateway serves) and ``srv.publish`` called on the server's own thread use the
blocking client.

Per (tenant, topic), under the hash tag ``{T}`` = ``{<len(tenant)>:<tenant>:<topic>}``:

* ``rtnb:{T}:meta`` — hash ``epoch`` (hex) and ``latest`` (the last sequence);
* ``rtnb:{T}:log`` — the stream; entry id ``<sequence>-1``, field ``b`` the event body;
* ``rtnb:{T}:state`` — hash entity id -> ``"<sequence> <state JSON>"``;
* ``rtnb:{T}:pub:<publishId>`` and ``rtnb:mutation:<len(tenant)>:<tenant>:<clientMutationId>``
  — an idempotency key (:class:`~rtnb.server.idempotency.Applied` encoded), set by the
  script that appends its event, expiring after the idempotency window.

One Lua script (:data:`APPEND`) appends a group of events to one topic: it checks
the epoch the gateway knows (missing, different, or a ``latest`` below what the
gateway has seen means Redis lost the stream: a new epoch, never a silent restart
from the oldest entry), checks each entity's base sequence (optimistic
concurrency: the state the gateway merged on is still the entity's state in
Redis, else ``conflict``), assigns the sequences, ``XADD … MAXLEN ~ retention``,
sets each event's idempotency key (an event whose key exists is not appended: its
first event answers the retry), updates the state hash and ``PUBLISH``-es the group on :data:`CHANNEL` (one
message), which every gateway reads once (not once per client). A gateway that sees a sequence
jump reads the missing range with ``XRANGE``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..protocol.errors import ServerStartError
from .config import DEFAULT_IDEMPOTENCY_WINDOW
from .idempotency import MUTATION_SCOPE, Applied, IdemKey, Scope
from .storage import Key, LogRecord, MemoryStorage
from .topiclog import Fetched

if TYPE_CHECKING:
    from .hub import Hub
    from .staged import Staged
    from .topiclog import TopicLog

logger = logging.getLogger("rtnb.server")

#: The Pub/Sub channel every gateway subscribes to once.
CHANNEL: Final = "rtnb:live"
#: Events each gateway keeps in memory per topic (at most the retention): what it fans out
#: and what a replay reads after the range it read from Redis. Replays read Redis (XRANGE).
MIRROR_TAIL: Final = 1024
#: The set of every stream, as JSON ``[tenant, topic]``.
REGISTRY: Final = "rtnb:streams"
#: Connections of a gateway's asyncio client (appends, replays, loads, claims) unless the
#: store URL says ``?max_connections=N``. Requests beyond it wait for a free connection.
POOL_SIZE: Final = 16
#: Seconds a request waits for a free pooled connection before failing like an unreachable
#: Redis (a replay then answers from the tail or ``unavailable``; a publish 503).
POOL_TIMEOUT: Final = 5.0
#: Seconds of a Redis command (and of connecting) before it counts as unreachable.
SOCKET_TIMEOUT: Final = 5.0
#: Names of the gateway's connections in ``CLIENT LIST`` (pooled client, live channel).
CLIENT_NAME: Final = "rtnb-gateway"
LISTENER_NAME: Final = "rtnb-live"
#: Registry answers a gateway remembers for the synchronous check that follows a preload.
_VERDICTS: Final = 1024

#: KEYS: meta, log, state, registry, then the idempotency keys of the group. ARGV: known
#: epoch, known latest, candidate epoch, maxlen, channel, member, key TTL (s), then per event
#: (entity, base sequence, body, state JSON or "" when deleted, index of its idempotency key
#: in KEYS or 0, the key's digest hex, "<occurredAt> <type>"). Zero events: only the
#: epoch/latest check.
#: Returns {status, epoch, latest, appended, prior}; status ok | conflict | epoch | dup. An
#: event whose key exists is not appended: ``dup``, the events before it appended, ``prior``
#: the key's value ``<digest> <epoch> <sequence> <occurredAt> <type>``. A key is set in the
#: step that appends its event, so a key never exists without its event (and vice versa).
#: One ``PUBLISH`` per call (not per event): member, epoch, first sequence, bodies, one a line (the
#: bodies are JSON, which never holds a raw newline).
APPEND: Final = """
local meta, stream, state = KEYS[1], KEYS[2], KEYS[3]
local known, known_latest, candidate = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local epoch = redis.call('HGET', meta, 'epoch')
local latest = tonumber(redis.call('HGET', meta, 'latest') or '0')
if (not epoch) or (epoch == known and latest < known_latest) then
  redis.call('DEL', stream, state)
  redis.call('HSET', meta, 'epoch', candidate, 'latest', 0)
  redis.call('SADD', KEYS[4], ARGV[6])
  return {'epoch', candidate, 0, 0, ''}
end
if epoch ~= known then return {'epoch', epoch, latest, 0, ''} end
local status, n, seen, bodies, prior = 'ok', 0, {}, {}, ''
for i = 8, #ARGV, 7 do
  local e = ARGV[i]
  local k = tonumber(ARGV[i + 4])
  if k > 0 then
    local got = redis.call('GET', KEYS[k])
    if got then status = 'dup'; prior = got; break end
  end
  if not seen[e] then
    local cur = redis.call('HGET', state, e)
    local curseq = 0
    if cur then curseq = tonumber(string.match(cur, '^%d+')) end
    if curseq ~= tonumber(ARGV[i + 1]) then status = 'conflict'; break end
  end
  seen[e] = true
  latest = latest + 1
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[4], latest .. '-1', 'b', ARGV[i + 2])
  if ARGV[i + 3] == '' then
    redis.call('HDEL', state, e)
  else
    redis.call('HSET', state, e, latest .. ' ' .. ARGV[i + 3])
  end
  if k > 0 then
    redis.call('SET', KEYS[k], ARGV[i + 5] .. ' ' .. epoch .. ' ' .. latest .. ' ' .. ARGV[i + 6],
      'EX', ARGV[7])
  end
  n = n + 1
  bodies[n] = ARGV[i + 2]
end
if n > 0 then
  redis.call('HSET', meta, 'latest', latest)
  redis.call('PUBLISH', ARGV[5], ARGV[6] .. '\\n' .. epoch .. '\\n' .. (latest - n + 1) .. '\\n'
    .. table.concat(bodies, '\\n'))
end
return {status, epoch, latest, n, prior}
"""

#: KEYS: meta, log, state, registry. ARGV: candidate epoch, member, tail.
#: Returns {epoch, latest, entries, state}: the newest ``tail`` entries (newest first) and
#: every entity's state, atomically.
LOAD: Final = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'latest', 0)
  redis.call('SADD', KEYS[4], ARGV[2])
  epoch = ARGV[1]
end
local latest = redis.call('HGET', KEYS[1], 'latest') or '0'
local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[3])
return {epoch, latest, tail, redis.call('HGETALL', KEYS[3])}
"""


#: KEYS: meta, log, state, registry. ARGV: new epoch, member, channel.
#: Empties the topic under the new epoch and tells every gateway (an epoch notice: first 0).
RESET: Final = """
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'latest', 0)
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[2] .. '\\n' .. ARGV[1] .. '\\n0\\n')
return 1
"""


class _Body(msgspec.Struct, array_like=True):
    """What Redis keeps of an event: everything but its position (sequence, id, token)."""

    entity_id: str
    type: str
    payload: dict[str, Any]
    occurred_at: datetime
    version: int


_encode = msgspec.json.Encoder().encode
_EPOCH0: Final = datetime(1970, 1, 1, tzinfo=UTC)
_decode_body = msgspec.json.Decoder(_Body).decode


def keys_of(key: Key) -> tuple[str, str, str]:
    """The meta, stream and state keys of one (tenant, topic)."""
    tenant, topic = key
    tag = f"rtnb:{{{len(tenant)}:{tenant}:{topic}}}"
    return f"{tag}:meta", f"{tag}:log", f"{tag}:state"


def parse_store(url: str) -> str:
    """Check a ``redis://HOST:PORT/DB`` store URL; ValueError says what is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"unknown store {parts.scheme or url!r}: use redis://HOST:PORT/DB "
            "(or omit --store for the in-memory store, --data DIR for SQLite)"
        )
    return url


class RedisStorage(MemoryStorage):
    """Streams in Redis, mirrored in memory; sequences assigned by Redis (see module doc).

    ``durable`` is True: the committer acknowledges an event only once the
    script has put it in Redis. Whether that survives a Redis crash is Redis's
    setting: ``appendonly yes`` with ``appendfsync always`` (``docs/redis.md``).
    """

    shares_entities = False  # the mirror holds what the shared store loaded (``install``)

    sequenced = True
    durable = True

    def __init__(self, url: str, *, retention: int = 10_000) -> None:
        super().__init__()
        import redis  # an optional dependency, imported only when used

        self.url = parse_store(url)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        size = query.get("max_connections", [str(POOL_SIZE)])[-1]
        if not size.isdigit() or int(size) < 1:
            raise ValueError(
                f"max_connections={size!r} in the store URL {self._redacted()}: use a "
                f"whole number of at least 1 (default {POOL_SIZE})"
            )
        self.pool_size = int(size)
        self._redis = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
        )
        self._retention = retention
        self._tail = min(retention, MIRROR_TAIL)
        #: Seconds an idempotency key lives in Redis (the server sets its window).
        self.window = int(DEFAULT_IDEMPOTENCY_WINDOW)
        self._append = self._redis.register_script(APPEND)
        self._load_script = self._redis.register_script(LOAD)
        self._reset_script = self._redis.register_script(RESET)
        self._loaded: tuple[Key, list[Any]] | None = None
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise ServerStartError(
                f"cannot reach the Redis store at {self._redacted()}: {exc}; start Redis or "
                "fix --store"
            ) from None

    @property
    def retention(self) -> int:
        return self._retention

    def _redacted(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"  # never the password

    # -- LogStorage ----------------------------------------------------------------------

    def streams(self) -> list[Key]:
        out: list[Key] = []
        for member in self._redis.smembers(REGISTRY):
            tenant, topic = msgspec.json.decode(member)
            out.append((tenant, topic))
        return out

    def exists(self, key: Key) -> bool:
        """Whether the stream exists in Redis (a topic another gateway created)."""
        return bool(self._redis.sismember(REGISTRY, _member(key)))

    def epoch(self, key: Key) -> bytes | None:
        """Load the topic from Redis into the mirror (creating it there if new)."""
        if key not in self._streams:
            self._load(key)
        return super().epoch(key)

    def _load(self, key: Key) -> None:
        """Load ``key`` with the blocking client: startup (before serving) and tools.

        On the loop, :meth:`Bridge.preload` loads a topic before anything uses it.
        """
        keys, args = self.load_args(key)
        self.install(key, self._load_script(keys=keys, args=args))

    def load_args(self, key: Key) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of :data:`LOAD` for ``key``."""
        from .topiclog import new_epoch

        meta, stream, state = keys_of(key)
        return [meta, stream, state, REGISTRY], [new_epoch().hex(), _member(key), self._tail]

    def install(self, key: Key, answer: Any) -> None:
        """Mirror what :data:`LOAD` answered for ``key`` (the next topic log builds on it)."""
        epoch_hex, latest, entries, fields = answer
        epoch = bytes.fromhex(epoch_hex.decode())
        super().reset(key, epoch)
        mirror = self._streams[key]
        mirror.latest = int(latest)
        self._loaded = (key, entries)  # the topic log mints their frames (take_loaded)
        for i in range(0, len(fields), 2):
            seq, _, text = fields[i + 1].partition(b" ")
            mirror.put(fields[i].decode(), msgspec.json.decode(text), int(seq))

    def loaded(self, key: Key) -> bool:
        return key in self._streams

    def take_loaded(self, key: Key) -> list[tuple[int, bytes]]:
        """The stream entries read by the last load of ``key`` (the topic log mints them)."""
        loaded = self._loaded
        if loaded is None or loaded[0] != key:
            return []
        self._loaded = None
        # Lua answers [id, [b, body]], newest first.
        return [(int(i.split(b"-")[0]), f[1]) for i, f in reversed(loaded[1])]

    def reset(self, key: Key, epoch: bytes) -> None:
        """Empty the topic *in Redis* under ``epoch``: every gateway sharing it starts afresh.

        Only ``chaos.restart(keep_data=False)`` calls this (a topic log never creates a
        Redis stream: ``epoch`` loads or creates it). The other gateways read the epoch
        notice on the live channel (or at their next resync) and reload; their clients'
        tokens answer ``unavailable`` and they take a snapshot of the empty topic.
        """
        meta, stream, state = keys_of(key)
        self._reset_script(
            keys=[meta, stream, state, REGISTRY], args=[epoch.hex(), _member(key), CHANNEL]
        )
        self.forget(key)  # the next topic log loads the new epoch from Redis

    def append(
        self, key: Key, record: LogRecord, entity_id: str, state: dict[str, Any] | None
    ) -> None:
        """Mirror a committed event (from Redis); keep the newest :data:`MIRROR_TAIL`."""
        super().append(key, record, entity_id, state)
        if len(self._streams[key].records) > self._tail:
            self._streams[key].records.popleft()

    def forget(self, key: Key) -> None:
        self._streams.pop(key, None)

    def close(self) -> None:
        self._redis.close()

    # -- Redis calls (the gateway's asyncio client, on its loop: ``Bridge``) ---------------

    def append_args(
        self, key: Key, epoch: bytes, latest: int, events: list[Appending]
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of :data:`APPEND` for one group of events of one topic."""
        from .topiclog import new_epoch

        meta, stream, state = keys_of(key)
        keys = [meta, stream, state, REGISTRY]
        args: list[Any] = [
            epoch.hex(),
            latest,
            new_epoch().hex(),
            self._retention,
            CHANNEL,
            _member(key),
            self.window,
        ]
        for entity_id, base, body, state_json, idem, rest in events:
            index = 0
            if idem is not None:
                keys.append(idem_key(idem.scope, idem.name))
                index = len(keys)
            args.extend(
                (entity_id, base, body, state_json, index, idem.digest.hex() if idem else "", rest)
            )
        return keys, args

    def run_append(self, key: Key, epoch: bytes, latest: int, events: list[Appending]) -> Answer:
        """:data:`APPEND` with the blocking client (tools and tests; gateways use ``Bridge``)."""
        keys, args = self.append_args(key, epoch, latest, events)
        return _appended(self._append(keys=keys, args=args))


#: One event for :data:`APPEND`: entity, base sequence, body, state JSON, its idempotency key
#: and ``"<occurredAt> <type>"`` (the rest of the key's value).
Appending = tuple[str, int, bytes, bytes, IdemKey | None, str]
#: What :data:`APPEND` answered: status, epoch, latest, appended, the prior key value.
Answer = tuple[str, bytes, int, int, bytes]


def _appended(answer: Any) -> Answer:
    status, epoch_hex, new_latest, n, prior = answer
    return (
        status.decode(),
        bytes.fromhex(epoch_hex.decode()),
        int(new_latest),
        int(n),
        prior if isinstance(prior, bytes) else str(prior).encode(),
    )


def idem_key(scope: Scope, name: str) -> str:
    """The Redis key of one idempotency key (a mutation's per tenant, a publish's per topic)."""
    if scope[1] == MUTATION_SCOPE:
        return _mutation_key(scope[0], name)
    tag = keys_of(scope)[0][: -len(":meta")]
    return f"{tag}:pub:{name}"


def _entries(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[int, bytes]]:
    return [(int(i.split(b"-")[0]), f[b"b"]) for i, f in entries]


def _mutation_key(tenant: str, cmid: str) -> str:
    return f"rtnb:mutation:{len(tenant)}:{tenant}:{cmid}"


def _member(key: Key) -> str:
    return msgspec.json.encode(list(key)).decode()


def rest_of(staged: Staged) -> str:
    """``"<occurredAt> <type>"`` of a staged event: its key's value after the position."""
    at = msgspec.json.encode(staged.event.occurred_at).decode()[1:-1]
    return f"{at} {staged.event.type}"


def body_of(staged: Staged) -> bytes:
    event = staged.event
    return _encode(
        _Body(event.entity_id, event.type, event.payload, event.occurred_at, event.version)
    )


class Bridge:
    """The gateway's side: the sequenced commit round and the Pub/Sub listener (on the loop)."""

    def __init__(self, hub: Hub, storage: RedisStorage) -> None:
        self.hub = hub
        self.storage = storage
        self.finals: dict[int, tuple[object, object]] = {}
        self._client: Any = None  # redis.asyncio.Redis, made on the loop at first use
        self._background: set[asyncio.Future[None]] = set()
        # What the last preload of a topic learned, for the synchronous check that follows
        # it: "" = absent from the registry, else why Redis did not answer (bounded).
        self._verdicts: collections.OrderedDict[Key, str] = collections.OrderedDict()
        self._load: Any = None
        self._append: Any = None

    # -- Redis I/O on the loop (asyncio client: no worker thread, no GIL hand-off) ----------

    def _aio(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # Bounded: many concurrent replays share POOL_SIZE connections, the rest wait.
            # Never retried by redis-py: an APPEND whose reply was lost may have run, and
            # sending it again would store an event without an idempotency key twice.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.storage.url,
                retry=Retry(NoBackoff(), 0),
                max_connections=self.storage.pool_size,
                timeout=POOL_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
                client_name=CLIENT_NAME,
            )
            self._client = aioredis.Redis.from_pool(pool)  # closing it closes the pool
            self._append = self._client.register_script(APPEND)
        return self._client

    async def append(self, key: Key, epoch: bytes, latest: int, events: list[Appending]) -> Answer:
        """Run :data:`APPEND` (one round trip for the group); its answer."""
        self._aio()
        keys, args = self.storage.append_args(key, epoch, latest, events)
        return _appended(await self._append(keys=keys, args=args))

    async def range(self, key: Key, after: int, upto: int) -> list[tuple[int, bytes]]:
        """The stream entries ``after < sequence <= upto`` (``XRANGE``)."""
        _, stream, _ = keys_of(key)
        return _entries(await self._aio().xrange(stream, f"{after + 1}-1", f"{upto}-1"))

    async def preload(self, key: Key, *, check: bool = True) -> None:
        """Load a topic this gateway has not used yet, on the loop (``LOAD``, asyncio client).

        ``check``: first ask the registry whether another gateway created it (a request
        naming a topic); what it learned (absent, or Redis not answering) is kept for the
        synchronous check that follows (:meth:`exists`), which then never asks Redis.
        Without ``check`` (a publish creates the topic) a Redis error is raised.
        """
        hub = self.hub
        self._verdicts.pop(key, None)
        if key in hub.logs:
            return
        try:
            if check and key not in hub.tenant_topics and key[1] not in hub.declared:
                if not await self._aio().sismember(REGISTRY, _member(key)):
                    self._verdict(key, "")
                    return
                hub.tenant_topics.add(key)
            if self._load is None:
                self._load = self._aio().register_script(LOAD)
            keys, args = self.storage.load_args(key)
            answer = await self._load(keys=keys, args=args)
        except Exception as exc:
            if check:
                self._verdict(key, f"{type(exc).__name__}: {exc}")
            raise
        if key not in hub.logs and not self.storage.loaded(key):
            self.storage.install(key, answer)
            hub.log(*key)

    def _verdict(self, key: Key, why: str) -> None:
        verdicts = self._verdicts
        verdicts[key] = why
        while len(verdicts) > _VERDICTS:
            verdicts.popitem(last=False)

    def unreachable(self, key: Key) -> str | None:
        """Why the preload just made of ``key`` could not reach Redis (None: it did)."""
        why = self._verdicts.get(key)
        if not why:
            return None
        return f"the Redis store did not answer for topic {key[1]!r} ({why}); retry shortly"

    def exists(self, key: Key) -> bool:
        """Whether ``key`` is in the registry (another gateway created it).

        Answered from the preload just made (every request on the loop preloads first,
        and :meth:`Hub.check` answers ``unavailable`` if that preload failed); only
        without a preload (tools, off the loop) is Redis asked, with the blocking client.
        """
        if self._verdicts.get(key) == "":
            return False
        return self.storage.exists(key)

    async def fetch(self, topic_log: TopicLog, token: str) -> Fetched | None:
        """Read the replay range of ``token`` from Redis (``XRANGE`` from its position).

        None when there is nothing to read (a token of another epoch, ahead, or at the
        head): :meth:`TopicLog.replay` answers those on its own.
        """
        parsed = self.hub.tokens.parse(topic_log.tenant, topic_log.topic, token)
        if parsed is None or parsed[0] != topic_log.epoch or parsed[1] >= topic_log.latest:
            return None
        position, upto = parsed[1], topic_log.latest
        entries = await self.range(topic_log.key, position, upto)
        if self.hub.logs.get(topic_log.key) is not topic_log:
            return None  # reloaded meanwhile: a new epoch, the token answers for itself
        if not entries or entries[0][0] != position + 1:
            first = entries[0][0] if entries else upto + 1
            return Fetched(
                position,
                [],
                f"events {position + 1}..{first - 1} are older than the retention kept in "
                f"Redis ({self.storage.retention} events)",
            )
        return Fetched(position, topic_log.records_of(entries))

    async def fetch_for(self, identity: Any, topic: str, token: str | None) -> Fetched | None:
        """:meth:`fetch` for a subscription request; None if refused (the subscribe says why)."""
        if token is None:
            return None
        try:
            topic_log = self.hub.check(identity, topic)
        except Exception:
            return None
        try:
            return await self.fetch(topic_log, token)
        except Exception as exc:  # Redis unreachable: the retained tail answers, or a snapshot
            logger.warning("rtnb redis: replay range of %r not read (%s)", topic, exc)
            return None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- ingesting committed events --------------------------------------------------------

    def ingest(self, topic_log: TopicLog, seq: int, body: bytes) -> Any:
        b = _decode_body(body)
        record, event = topic_log.ingest(
            seq, b.entity_id, b.type, b.payload, occurred_at=b.occurred_at, version=b.version
        )
        if record is not None:
            self.hub._fan_out(topic_log.key, record)
        return event

    async def fill(self, topic_log: TopicLog, upto: int) -> TopicLog:
        """Read and ingest the events after the mirror's latest up to ``upto`` (XRANGE)."""
        key = topic_log.key
        while topic_log.latest < upto:
            after = topic_log.latest
            entries = await self.range(key, after, upto)
            if self.hub.logs.get(key) is not topic_log:
                return self.hub.logs[key]
            if not entries or entries[0][0] > topic_log.latest + 1:
                if topic_log.latest >= upto:
                    break
                logger.warning(
                    "rtnb redis: %s fell behind retention; reloading it from Redis", key[1]
                )
                return await self.reload(key, "the gateway fell behind retention")
            for seq, body in entries:
                if seq == topic_log.latest + 1:
                    self.ingest(topic_log, seq, body)
        return topic_log

    async def reload(self, key: Key, why: str) -> TopicLog:
        """Drop the mirror of ``key`` and load it again from Redis; its subscribers reconnect.

        Loaded on the loop's asyncio client; if Redis fails meanwhile the error is raised
        and the topic is loaded by the next request that names it.
        """
        self.storage.forget(key)
        self.hub.logs.pop(key, None)
        subs = self.hub._subs.pop(key, {})
        for session in tuple(subs):
            session.kill(1012, f"topic log reset in the store ({why}); reconnect")
        logger.warning("rtnb redis: topic %r reloaded (%s)", key[1], why)
        await self.preload(key, check=False)
        return self.hub.log(*key)

    # -- publishing --------------------------------------------------------------------------

    async def commit(self, staged: list[Staged]) -> None:
        """Append a round's events: every topic's script in one round trip (a pipeline), so
        Redis writes (and with ``appendfsync always`` fsyncs) them together; a topic that met
        a conflict or a new epoch then retries alone."""
        groups: dict[Key, list[Staged]] = {}
        for item in staged:
            groups.setdefault(item.log.key, []).append(item)
        try:
            for key in groups:  # a reload that failed left it unloaded: load it on the loop
                if key not in self.hub.logs:
                    await self.preload(key, check=False)
            if len(groups) == 1:
                ((key, items),) = groups.items()
                await self._commit_topic(key, items)
                return
            prepared = [(key, items, *self._prepare(key, items)) for key, items in groups.items()]
            pipe = self._aio().pipeline(transaction=False)
            for key, _, topic_log, events in prepared:
                keys, args = self.storage.append_args(
                    key, topic_log.epoch, topic_log.latest, events
                )
                await self._append(keys=keys, args=args, client=pipe)  # queued, not sent
            answers = await pipe.execute()
            for (key, items, topic_log, events), answer in zip(prepared, answers, strict=True):
                rest = await self._settle(key, items, topic_log, events, _appended(answer))
                await self._commit_topic(key, rest)
        finally:
            for item in staged:
                item.log.settle(item)

    def _prepare(self, key: Key, pending: list[Staged]) -> tuple[TopicLog, list[Appending]]:
        """Merge ``pending`` on the mirror's committed state: the script's arguments."""
        topic_log = self.hub.log(*key)
        chain: dict[str, dict[str, Any] | None] = {}
        events: list[Appending] = []
        for item in pending:
            e, ev = item.event.entity_id, item.event
            prior = chain[e] if e in chain else topic_log.entities.get(e)
            base = -1 if e in chain else topic_log.entity_sequence.get(e, 0)
            state = topic_log.merge(prior, ev.type, ev.payload)
            chain[e] = state
            events.append(
                (
                    e,
                    base,
                    body_of(item),
                    b"" if state is None else _encode(state),
                    item.key,
                    rest_of(item) if item.key is not None else "",
                )
            )
        return topic_log, events

    async def _settle(
        self,
        key: Key,
        pending: list[Staged],
        topic_log: TopicLog,
        events: list[Appending],
        answer: Answer,
    ) -> list[Staged]:
        """Ingest what the script appended; the events still to append (conflict, epoch, dup)."""
        status, epoch, latest, n, prior = answer
        if status == "epoch":  # nothing appended: merge again on the new epoch
            if epoch != topic_log.epoch and self.hub.logs.get(key) is topic_log:
                await self.reload(key, "Redis lost the stream: new epoch")
            return pending
        topic_log = self.hub.log(*key)  # reloaded meanwhile? the appended events stand
        first = latest - n + 1
        topic_log = await self.fill(topic_log, first - 1)
        for i in range(n):
            final = self.ingest(topic_log, first + i, events[i][2])
            self._remember(pending[i].event, final)
            self.hub.keys.commit(pending[i], final)
        if status == "conflict":
            await self.fill(topic_log, latest)
        if status == "dup":  # its key exists: stored before (any gateway); answer that event
            self._duplicate(pending[n], prior)
            return pending[n + 1 :]
        return pending[n:]

    def _duplicate(self, item: Staged, prior: bytes) -> None:
        """``item``'s key was stored with an event before: ``item`` resolves to that event."""
        key = item.key
        assert key is not None
        try:
            applied = Applied.decode(prior)
        except ValueError:  # not a value this version wrote
            self._remember(item.event, key.conflict())
            return
        if applied.digest != key.digest:
            self._remember(item.event, key.conflict())
            return
        ev = item.event
        final = self.hub.keys.rebuild(
            applied, key.scope[0], ev.topic, ev.entity_id, ev.payload, ev.version
        )
        self._remember(item.event, final)
        self.hub.keys.commit(item, final)

    async def _commit_topic(self, key: Key, pending: list[Staged]) -> None:
        for _ in range(1000):
            if not pending:
                return
            if key not in self.hub.logs:  # the reload of a new epoch failed: load it here
                await self.preload(key, check=False)
            topic_log, events = self._prepare(key, pending)
            answer = await self.append(key, topic_log.epoch, topic_log.latest, events)
            pending = await self._settle(key, pending, topic_log, events, answer)
        raise RuntimeError(f"{key[1]}: could not append after 1000 conflicts")

    def _remember(self, provisional: object, final: object) -> None:
        finals = self.finals
        finals[id(provisional)] = (provisional, final)
        if len(finals) > 65_536:
            del finals[next(iter(finals))]

    def resolve(self, event: Any) -> Any:
        entry = self.finals.get(id(event))
        return entry[1] if entry is not None and entry[0] is event else event

    # -- idempotency keys across gateways ----------------------------------------------------

    async def recall(self, key: IdemKey) -> Applied | None:
        """What Redis holds for ``key`` (any gateway stored it), on the loop's client.

        A value this version did not write answers as a conflict (a different digest).
        """
        value = await self._aio().get(idem_key(key.scope, key.name))
        if value is None:
            return None
        try:
            return Applied.decode(value)
        except ValueError:
            return Applied(b"", b"", 0, _EPOCH0, "")

    # -- live events from every gateway ------------------------------------------------------

    async def on_message(self, data: bytes) -> None:
        """One appended group: ``member\\nepoch\\nfirst\\nbodies…`` (first 0: an epoch notice)."""
        member, epoch_hex, first_text, rest = data.split(b"\n", 3)
        tenant, topic = msgspec.json.decode(member)
        key = (tenant, topic)
        first = int(first_text)
        self.hub.tenant_topics.add(key)
        if key not in self.hub.logs:
            if first > 0:  # loads the head: these events included, or later ones
                await self.preload(key, check=False)
            return
        topic_log = self.hub.logs[key]
        if bytes.fromhex(epoch_hex.decode()) != topic_log.epoch:
            await self.reload(key, "new epoch in the store")
            return
        if first == 0:
            return
        bodies = rest.split(b"\n")
        last = first + len(bodies) - 1
        if last <= topic_log.latest:
            return
        if first > topic_log.latest + 1:
            topic_log = await self.fill(topic_log, first - 1)
        for seq, body in enumerate(bodies, first):
            if seq == topic_log.latest + 1:
                self.ingest(topic_log, seq, body)

    async def resync(self) -> None:
        """After (re)connecting: check every topic's epoch and latest against Redis."""
        for key, topic_log in list(self.hub.logs.items()):
            status, _epoch, latest, _, _ = await self.append(
                key, topic_log.epoch, topic_log.latest, []
            )
            if self.hub.logs.get(key) is not topic_log:
                continue
            if status == "epoch":
                await self.reload(key, "Redis lost the stream: new epoch")
            elif latest > topic_log.latest:
                await self.fill(topic_log, latest)

    async def listen(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Read :data:`CHANNEL` forever; on a lost connection, reconnect and resync.

        ``ready`` is awaited once, when the channel is first subscribed: a gateway is
        not ready before it hears every append (else an append made meanwhile, to a
        topic it has not loaded, would reach it only with the next one)."""
        import redis.asyncio as aioredis

        delay = 0.05
        while True:
            client = aioredis.Redis.from_url(self.storage.url, client_name=LISTENER_NAME)
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(CHANNEL)
                await self.resync()
                if ready is not None:
                    await ready()
                    ready = None
                delay = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        await self.on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("rtnb redis: live channel lost (%s); reconnecting", exc)
                await asyncio.sleep(delay)  # a reconnect backoff, not a wait for a condition
                delay = min(delay * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
