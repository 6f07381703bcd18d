"""Idempotency keys: a retried publish or mutation answers the original event, stores nothing.

Two kinds of key, one rule (DESIGN.md §3):

* ``publishId`` (``POST /publish``, ``srv.publish(..., publish_id=)``,
  ``publish_many``): remembered per (tenant, topic);
* ``clientMutationId``: remembered per tenant (its fingerprint names the topic).

A key is remembered once its event is *committed* — never before (an
acknowledgement is never given for an event that was not stored) — for
``idempotency_window`` seconds (default :data:`~rtnb.server.config.DEFAULT_IDEMPOTENCY_WINDOW`).
The store keeps it in the same atomic step as the event: the SQLite transaction
that writes the event, the Redis ``APPEND`` script that appends it. So after a
crash, a cut link or a stall, either both exist or neither does.

What is kept per key is only what answering a retry needs (:class:`Applied`: a
16-byte digest of the request, the epoch, the sequence, the time and the event
type — not the payload): a retry carries the same payload (the digest proves
it), so the original event frame is rebuilt exactly from the request and the
entry. The server's in-memory copy is capped in bytes
(``idempotency_bytes``); at the cap the oldest keys are forgotten first.
"""

from __future__ import annotations

import collections
import hashlib
import operator
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from itertools import accumulate, compress, count, islice, repeat
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec

from ..protocol.errors import RtnbError
from ..protocol.frames import Event

if TYPE_CHECKING:
    from .staged import Staged
    from .storage import LogStorage
    from .tokens import ReplayTokens

Scope = tuple[str, str]  # (tenant, topic) of a publishId; (tenant, MUTATION_SCOPE) of a mutation
#: The scope of clientMutationIds within a tenant (no topic name is empty).
MUTATION_SCOPE: Final = ""
#: Bytes one remembered key costs in memory besides its strings (the tuple, the digest,
#: the epoch, the int, the datetime, the ordered-dict node), measured on CPython 3.11 with
#: ``tests/server/test_server_idempotency.py`` (``sys.getsizeof`` of every part: ~630).
ENTRY_OVERHEAD: Final = 768


class IdempotencyConflict(RtnbError, ValueError):
    """The key was already used for a different publish or mutation (HTTP 409)."""


class Applied(NamedTuple):
    """What answering a retry needs: the rest of the event is in the retried request."""

    digest: bytes  # 16 bytes: blake2b of the request's content
    epoch: bytes
    sequence: int
    occurred_at: datetime
    type: str

    def encode(self) -> str:
        """``<digest hex> <epoch hex> <sequence> <occurredAt> <type>`` (SQLite, Redis)."""
        at = msgspec.json.encode(self.occurred_at).decode()[1:-1]
        return f"{self.digest.hex()} {self.epoch.hex()} {self.sequence} {at} {self.type}"

    @classmethod
    def decode(cls, text: str | bytes) -> Applied:
        """The inverse of :meth:`encode`; ValueError if ``text`` is not one."""
        if isinstance(text, bytes):
            text = text.decode()
        fp, epoch, seq, at, event_type = text.split(" ", 4)
        occurred_at = msgspec.json.decode(f'"{at}"'.encode(), type=datetime)
        return cls(bytes.fromhex(fp), bytes.fromhex(epoch), int(seq), occurred_at, event_type)


class IdemKey(msgspec.Struct, gc=False, eq=False):
    """One idempotency key of a publish or mutation, and the digest of its content.

    ``id`` is ``(scope[0], scope[1], name)``, the key of :class:`Remembered` (:meth:`of`
    builds it). A ``msgspec.Struct`` built in C, not tracked by the garbage collector (it
    holds strings and bytes only): ``publish_many`` builds one per keyed event (issue 22).
    """

    scope: Scope
    name: str
    digest: bytes
    id: tuple[str, str, str]

    @classmethod
    def of(cls, scope: Scope, name: str, digest: bytes) -> IdemKey:
        return cls(scope, name, digest, (scope[0], scope[1], name))

    def __repr__(self) -> str:
        return f"IdemKey(scope={self.scope!r}, name={self.name!r})"

    def conflict(self) -> IdempotencyConflict:
        what = "clientMutationId" if self.scope[1] == MUTATION_SCOPE else "publishId"
        return IdempotencyConflict(
            f"this {what} was already used for a different "
            f"{'mutation' if what == 'clientMutationId' else 'publish'}; use a fresh {what} "
            "for each new one (a retry must repeat the original exactly)"
        )


#: JSON with sorted keys: what :func:`digest` hashes (its definition is stored: keep it).
sorted_json: Final = msgspec.json.Encoder(order="sorted").encode


def digest(*parts: Any) -> bytes:
    """16 bytes naming a request's content (sorted JSON, so key order does not matter)."""
    return hashlib.blake2b(sorted_json(parts), digest_size=16).digest()


_KEY: Final = operator.itemgetter(0)
#: One remembered key: digest, epoch, sequence, occurredAt, type, stored at (unix s), and
#: its cost in bytes (:meth:`Remembered.cost`, kept so that evicting sums costs in C).
_Entry = tuple[bytes, bytes, int, datetime, str, float, int]
_COST: Final = operator.itemgetter(6)
_TENANT: Final = operator.itemgetter(0)
_SCOPE: Final = operator.itemgetter(1)
_NAME: Final = operator.itemgetter(2)
#: Inserts between two sweeps of keys past the window (``get`` checks the age anyway).
_SWEEP_EVERY: Final = 1024


class Remembered:
    """Committed idempotency keys in memory: per key an :class:`Applied`, capped in bytes.

    Entries older than ``window`` seconds are never answered (checked on access) and are
    swept oldest first every :data:`_SWEEP_EVERY` inserts; beyond ``max_bytes`` the oldest
    are forgotten first, at once.
    """

    def __init__(
        self, *, max_bytes: int, window: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_bytes = max_bytes
        self.window = window
        self._clock = clock
        self._entries: collections.OrderedDict[tuple[str, str, str], _Entry] = (
            collections.OrderedDict()
        )
        self.bytes = 0
        self.forgotten = 0  # keys dropped at the byte cap (not by age)
        self._puts = 0

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` (``(tenant, topic, name)``) is remembered (no recency update)."""
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def isdisjoint(self, keys: Iterable[tuple[str, str, str]]) -> bool:
        """Whether none of ``keys`` is remembered (no recency update; in C)."""
        return self._entries.keys().isdisjoint(keys)

    @staticmethod
    def cost(key: tuple[str, str, str], applied: Applied) -> int:
        """Bytes one key costs: :data:`ENTRY_OVERHEAD` plus its strings."""
        return ENTRY_OVERHEAD + sum(map(len, key)) + len(applied.type) + len(applied.epoch)

    def get(self, scope: Scope, name: str) -> Applied | None:
        return self.get_id((scope[0], scope[1], name))

    def get_id(self, key: tuple[str, str, str]) -> Applied | None:
        """:meth:`get` by ``IdemKey.id``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[5] < self._clock() - self.window:
            self._drop(key)
            return None
        return Applied(*entry[:5])

    def put(self, scope: Scope, name: str, applied: Applied, at: float | None = None) -> None:
        self.add((scope[0], scope[1], name), *applied, self._clock() if at is None else at)

    def add(
        self,
        key: tuple[str, str, str],
        digest: bytes,
        epoch: bytes,
        sequence: int,
        occurred_at: datetime,
        event_type: str,
        at: float,
    ) -> None:
        """:meth:`put` without building an :class:`Applied` (the commit path)."""
        entries = self._entries
        if key in entries:
            self._drop(key)
        cost = (
            ENTRY_OVERHEAD + len(key[0]) + len(key[1]) + len(key[2]) + len(event_type) + len(epoch)
        )
        entries[key] = (digest, epoch, sequence, occurred_at, event_type, at, cost)
        self.bytes += cost
        while self.bytes > self.max_bytes and entries:
            self._drop(next(iter(entries)))
            self.forgotten += 1
        self._puts += 1
        if self._puts % _SWEEP_EVERY == 0:
            self.sweep()

    def add_many(
        self,
        entries: list[tuple[tuple[str, str, str], bytes, bytes, int, datetime, str]],
        at: float,
    ) -> None:
        """:meth:`add` of each ``(key, digest, epoch, sequence, occurred_at, type)`` in order,
        all stored at ``at``: the same keys kept, forgotten and swept, given distinct keys
        (one commit round: a key staged twice answers the first, it is not staged again)."""
        items = self._entries
        if not items.keys().isdisjoint(map(_KEY, entries)):  # re-remembered: one by one
            for entry in entries:
                self.add(*entry, at)
            return
        added = 0
        for key, digest, epoch, sequence, occurred_at, event_type in entries:
            cost = (
                ENTRY_OVERHEAD
                + len(key[0])
                + len(key[1])
                + len(key[2])
                + len(event_type)
                + len(epoch)
            )
            items[key] = (digest, epoch, sequence, occurred_at, event_type, at, cost)
            added += cost
        self.bytes += added
        self._added(len(entries))

    def add_columns(
        self,
        keys: list[tuple[str, str, str]],
        digests: list[bytes],
        epoch: bytes,
        sequences: list[int],
        occurred_at: list[datetime],
        types: list[str],
        at: float,
    ) -> None:
        """:meth:`add_many` of one log's keys given column by column (one commit round), in C."""
        items = self._entries
        if len(set(keys)) != len(keys) or not items.keys().isdisjoint(keys):
            self.add_many(
                list(zip(keys, digests, repeat(epoch), sequences, occurred_at, types)), at
            )
            return
        fixed = ENTRY_OVERHEAD + len(epoch)
        costs = list(
            map(
                sum,
                zip(
                    repeat(fixed),
                    map(len, map(_TENANT, keys)),
                    map(len, map(_SCOPE, keys)),
                    map(len, map(_NAME, keys)),
                    map(len, types),
                ),
            )
        )
        items.update(
            zip(
                keys,
                zip(
                    digests,
                    repeat(epoch),
                    sequences,
                    occurred_at,
                    types,
                    repeat(at),
                    costs,
                    strict=False,
                ),
                strict=True,
            )
        )
        self.bytes += sum(costs)
        self._added(len(keys))

    def _added(self, added: int) -> None:
        """After ``added`` new entries: forget the oldest past the cap, sweep when due.

        Dropping the oldest until under the cap once, after all, keeps the same suffix as
        after each insert: a key dropped then would not fit with everything after it now.
        How many: the first prefix of the oldest whose costs cover the excess (in C).
        """
        items = self._entries
        excess = self.bytes - self.max_bytes
        if excess > 0:
            ends = accumulate(map(_COST, items.values()))
            drop = next(compress(count(1), map(operator.ge, ends, repeat(excess))), len(items))
            oldest = list(islice(items, drop))
            self.bytes -= sum(map(_COST, map(items.pop, oldest)))
            self.forgotten += drop
        before = self._puts
        self._puts += added
        if self._puts // _SWEEP_EVERY != before // _SWEEP_EVERY:
            self.sweep()

    def sweep(self) -> None:
        """Forget the keys past the window (oldest first)."""
        entries = self._entries
        oldest = self._clock() - self.window
        while entries:
            key, entry = next(iter(entries.items()))
            if entry[5] >= oldest:
                return
            self._drop(key)

    def load(self, entries: Iterable[tuple[Scope, str, Applied, float]]) -> None:
        """Entries a persistent store kept (oldest first), within the window and the cap."""
        for scope, name, applied, at in entries:
            self.put(scope, name, applied, at)
        self.sweep()

    def _drop(self, key: tuple[str, str, str]) -> None:
        self.bytes -= self._entries.pop(key)[6]


class Keys:
    """The idempotency keys a hub answers retries from: committed ones (:class:`Remembered`,
    owned by the server handle so they survive restarts) and those of events staged but
    not committed yet (a retry meanwhile shares their outcome)."""

    def __init__(self, remembered: Remembered, tokens: ReplayTokens) -> None:
        self.remembered = remembered
        self.tokens = tokens
        self._inflight: dict[tuple[str, str, str], Staged] = {}

    def recall(
        self,
        key: IdemKey,
        topic: str,
        entity_id: str,
        payload: Mapping[str, Any],
        version: int = 1,
        prior: Applied | None = None,
    ) -> tuple[Event, bool] | None:
        """The event a retry of ``key`` answers, and whether it is committed; None if new.

        Committed (remembered here, or ``prior``: what the shared store holds): the original
        event, rebuilt from the retried request and what was kept. Staged and not committed
        yet: that staged event (the caller waits for its commit). Raises
        :class:`~rtnb.server.idempotency.IdempotencyConflict` if the key was used for
        different content.
        """
        applied = self.remembered.get_id(key.id) or prior
        if applied is not None:
            if applied.digest != key.digest:
                raise key.conflict()
            return self.rebuild(applied, key.scope[0], topic, entity_id, payload, version), True
        staged = self._inflight.get(key.id)
        if staged is not None:
            if staged.key is None or staged.key.digest != key.digest:
                raise key.conflict()
            return staged.event, False
        return None

    def rebuild(
        self,
        applied: Applied,
        tenant: str,
        topic: str,
        entity_id: str,
        payload: Mapping[str, Any],
        version: int,
    ) -> Event:
        """The original event of a retried request: the same frame, byte for byte."""
        seq = applied.sequence
        return Event(
            id=f"evt-{applied.epoch.hex()}-{seq}",
            type=applied.type,
            topic=topic,
            sequence=seq,
            entity_id=entity_id,
            occurred_at=applied.occurred_at,
            replay_token=self.tokens.token(tenant, topic, applied.epoch, seq),
            payload=dict(payload),
            version=version,
        )

    def stage(self, staged: Staged, key: IdemKey, storage: LogStorage) -> None:
        """``staged`` carries ``key``: in flight until committed; a store that keeps keys
        (SQLite) writes it in the transaction that writes the event."""
        staged.key = key
        self._inflight[key.id] = staged
        if storage.keeps_keys:
            storage.remember(key.scope, key.name, self.applied(staged), time.time())

    @staticmethod
    def applied(staged: Staged, final: Event | None = None) -> Applied:
        """What remembering ``staged``'s key keeps (``final``: its committed form)."""
        assert staged.key is not None
        if final is None:  # no Event built for it (a bulk-staged event has its parts)
            sequence, occurred_at, event_type = staged.applied()
            return Applied(staged.key.digest, staged.log.epoch, sequence, occurred_at, event_type)
        epoch = bytes.fromhex(final.id.split("-")[1])
        return Applied(staged.key.digest, epoch, final.sequence, final.occurred_at, final.type)

    def fresh(self, key_ids: list[tuple[str, str, str]]) -> bool:
        """:meth:`new` of every one of ``key_ids``, in C."""
        return self._inflight.keys().isdisjoint(key_ids) and self.remembered.isdisjoint(key_ids)

    def new(self, key_id: tuple[str, str, str]) -> bool:
        """Neither remembered nor in flight: :meth:`recall` would answer None (a quick check)."""
        return key_id not in self._inflight and key_id not in self.remembered

    def stage_many(
        self, staged: list[Staged], keys: list[IdemKey | None], storage: LogStorage
    ) -> None:
        """:meth:`stage` of each staged event that has a key."""
        inflight = self._inflight
        keeps = storage.keeps_keys
        now = time.time()
        for item, key in zip(staged, keys, strict=False):
            if key is not None:
                item.key = key
                inflight[key.id] = item
                if keeps:
                    storage.remember(key.scope, key.name, self.applied(item), now)

    def commit_many(self, staged: list[Staged], at: float) -> None:
        """:meth:`commit` of each committed event of one topic log that has a key."""
        inflight = self._inflight
        if staged:  # one log's keyed events (a keyed publish_many): columns, remembered in C
            # (One loop of attribute loads: ``operator.attrgetter`` maps over these structs
            # cost ~3× as much.)
            log = staged[0].log
            ids: list[tuple[str, str, str]] = []
            digests: list[bytes] = []
            sequences: list[int] = []
            occurred: list[datetime] = []
            types: list[str] = []
            for item in staged:
                key = item.key
                if key is None or item.log is not log:
                    break
                key_id = key.id
                ids.append(key_id)
                digests.append(key.digest)
                sequences.append(item.record.sequence)
                occurred.append(item.occurred_at)
                types.append(item.type)
                if inflight.get(key_id) is item:  # (the loop below skips what is gone)
                    del inflight[key_id]
            else:
                self.remembered.add_columns(ids, digests, log.epoch, sequences, occurred, types, at)
                return
        entries: list[tuple[tuple[str, str, str], bytes, bytes, int, datetime, str]] = []
        append = entries.append
        for item in staged:
            key = item.key
            if key is None:
                continue
            key_id = key.id
            append(
                (
                    key_id,
                    key.digest,
                    item.log.epoch,
                    item.record.sequence,
                    item.occurred_at,
                    item.type,
                )
            )
            if inflight.get(key_id) is item:
                del inflight[key_id]
        if entries:
            self.remembered.add_many(entries, at)

    def commit(self, staged: Staged, final: Event | None = None, at: float | None = None) -> None:
        """``staged`` is committed (as ``final``): its key answers retries from now on.

        ``at``: when (unix s; default now), one clock read for a whole commit round.
        """
        key = staged.key
        if key is None:
            return
        if final is None:
            epoch = staged.log.epoch
            sequence, occurred_at, event_type = staged.applied()
        else:
            epoch = bytes.fromhex(final.id.split("-")[1])
            sequence, occurred_at, event_type = final.sequence, final.occurred_at, final.type
        self.remembered.add(
            key.id,
            key.digest,
            epoch,
            sequence,
            occurred_at,
            event_type,
            time.time() if at is None else at,
        )
        if self._inflight.get(key.id) is staged:
            del self._inflight[key.id]

    def forget(self, staged: Iterable[Staged]) -> None:
        """Those events were not committed (the store failed): their keys are not in flight."""
        for item in staged:
            key = item.key
            if key is not None and self._inflight.get(key.id) is item:
                del self._inflight[key.id]
