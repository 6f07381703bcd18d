"""One (tenant, topic) log: contiguous sequences, replay, and the state derived from it.

State is derived with :func:`rtnb.core.merge.apply_to`, the very function the
client store uses, so a client that applied every event once, in order, holds
exactly ``TopicLog.entities``.
"""

from __future__ import annotations

import operator
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import chain, compress, count, repeat
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import msgspec

from ..core.merge import CLIENT_MUTATION_ID, DELETED_SUFFIX, MergeFn, shallow_merge
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE, encode_str, frame_bytes
from ..protocol.errors import RtnbError
from ..protocol.frames import Event, Snapshot, SnapshotEntity
from .staged import Staged
from .storage import Key, LogRecord, LogStorage, MemoryStorage
from .tokens import EPOCH_BYTES, ReplayTokens

if TYPE_CHECKING:
    from .bulk import Prepared
    from .idempotency import IdemKey

#: Target size of one snapshot frame, in bytes: 262,144 (256 KiB, well under 1 MiB).
SNAPSHOT_CHUNK_BYTES: Final = 256 * 1024

_ENCODER: Final = msgspec.json.Encoder()
_MAX_SEQUENCE: Final = 2**63 - 1
# An event as a sequenced store keeps it: [entity_id, type, payload, occurred_at, version].
_BODY: Final = msgspec.json.Decoder(tuple[str, str, dict[str, Any], datetime, int]).decode


ReplayAnswer = tuple[Literal["complete", "unavailable"], list[LogRecord], str]


class Fetched(NamedTuple):
    """A replay range a sequenced store read for a token (``Bridge.fetch``), before subscribing.

    ``records`` are the events after ``position`` up to some point, read from the store;
    ``why`` is set instead when the store no longer holds ``position + 1`` (retention).
    """

    position: int
    records: list[LogRecord]
    why: str = ""


class TooLarge(RtnbError, ValueError):
    """An event or entity state that no client could receive under the frame limit."""


_MISSING: Final[Any] = object()
#: Events staged between two measures of every entity state (``TopicLog._fits``), at least.
_MEASURE_EVERY = 1_000
_EMPTY: Final[dict[str, Any]] = {}  # the prior of a new entity (never changed)
_STATE: Final = operator.attrgetter("state")
_ENTITY_ID: Final = operator.attrgetter("entity_id")


def new_epoch() -> bytes:
    """A fresh random epoch: a log reset can never be mistaken for the old log."""
    return secrets.token_bytes(EPOCH_BYTES)


class TopicLog:
    """The append-only event log of one topic of one tenant, with its current state."""

    def __init__(
        self,
        tenant: str,
        topic: str,
        storage: LogStorage,
        tokens: ReplayTokens,
        *,
        retention: int,
        merge: MergeFn = shallow_merge,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.tenant = tenant
        self.topic = topic
        self.key: Key = (tenant, topic)
        self._storage = storage
        self._tokens = tokens
        self._retention = retention
        self._merge = merge
        self.merge = merge  # the merge rule (a sequenced store re-merges on commit)
        self._max_frame_size = max_frame_size
        epoch = storage.epoch(self.key)
        if epoch is None:
            epoch = new_epoch()
            storage.reset(self.key, epoch)
        self.epoch = epoch
        self.id_prefix = f"evt-{epoch.hex()}-"  # an event id is this and its sequence
        self._minter = tokens.minter(tenant, topic, epoch)
        self._sequenced = storage.sequenced
        if self._sequenced:
            self._load_mirror()
        first, self.latest = storage.bounds(self.key)
        self._kept = self.latest - first + 1
        stored = storage.entities(self.key)
        self.entities: dict[str, dict[str, Any]] = {e: s for e, (s, _) in stored.items()}
        self.entity_sequence: dict[str, int] = {e: q for e, (_, q) in stored.items()}
        self._head = self.latest  # the last staged sequence (committed or not)
        # Each entity's state including staged events (None: deleted) and the sequence of its
        # last staged event, until committed. Two maps, not a ``(state, seq)`` tuple per
        # event: such tuples are tracked by the garbage collector (see ``storage._Stream``).
        self._staged: dict[str, dict[str, Any] | None] = {}
        self._staged_seq: dict[str, int] = {}
        # An upper bound on the encoded size of each entity's current state (staged
        # included), so that ``stage_many`` encodes a state only when it could be too large.
        self._bounds: dict[str, int] = {}
        # An upper bound on the encoded size of every entity state current since it was last
        # measured (None: not measured yet), so that a batch too small to bring any entity
        # to the frame limit skips the per-entity bounds (``_fits``); re-measured over all
        # entities at most once per ``len(entities)`` staged events (``_fits``).
        self._ceiling: int | None = None
        self._measure_at = 0
        self._topic_json = _ENCODER.encode(topic).decode()
        # Bytes of a one-entity snapshot frame around its entity id and state, with the
        # widest sequences and flag: an entity that fits this can always be sent alone.
        shell = _ENCODER.encode(
            Snapshot(
                topic=topic,
                entities=[SnapshotEntity(entity_id="-", state={}, sequence=_MAX_SEQUENCE)],
                token=self._minter.mint(0),
                sequence=_MAX_SEQUENCE,
                more=False,  # "false" is longer than "true"
            )
        )
        self._entity_overhead = len(shell) - len(b'"-"') - len(b"{}")
        self._shared = isinstance(storage, MemoryStorage) and storage.shares_entities
        self._pending: list[Staged] = []  # staged (appended) and maybe committed since
        if self._shared:
            storage.share(self.key, self._appended)  # type: ignore[attr-defined]

    def _appended(self) -> dict[str, tuple[dict[str, Any], int]]:
        """Every entity as appended to storage: committed, then each staged event on top."""
        sequences, latest = self.entity_sequence, self.latest
        out = {e: (s, sequences[e]) for e, s in self.entities.items()}
        for item in self._pending:
            seq = item.record.sequence
            if seq <= latest:
                continue
            if item.state is None:
                out.pop(item.entity_id, None)
            else:
                out[item.entity_id] = (item.state, seq)
        return out

    def abandon(self) -> None:
        """Forget every staged event (its write failed): the next stages after ``latest``."""
        if self._shared:  # the store keeps what was appended: copied there as it is now
            self._storage.share(self.key, None)  # type: ignore[attr-defined]
            self._shared = False
        self._pending.clear()
        self._staged.clear()
        self._staged_seq.clear()
        self._bounds.clear()  # they bounded staged states, not the committed ones
        self._head = self.latest

    def event_id(self, seq: int) -> str:
        return self.id_prefix + str(seq)

    # -- writing -------------------------------------------------------------
    #
    # Two steps, so that nothing is visible before it is durable: ``stage`` fixes
    # the event (sequence, id, token, frame, resulting state) and hands it to the
    # storage; ``commit`` — once the storage has made it durable — moves the
    # high watermark (``latest``) and the state every reader sees. Until then
    # snapshots, replays, heartbeats and ``truth`` show the committed state only.

    def stage(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        entity_id: str,
        *,
        occurred_at: datetime | None = None,
        version: int = 1,
    ) -> Staged:
        """Build the next event; raise :class:`TooLarge` (changing nothing) if undeliverable."""
        # A sequenced store (Redis) assigns the real sequence when it commits; until then
        # the event carries a provisional one, unique in this process.
        seq = max(self._head, self.latest) + 1
        event, text = self._build(seq, event_type, payload, entity_id, occurred_at, version)
        token = event.replay_token
        limit = self._max_frame_size
        size = frame_bytes(text, limit)
        if size > limit:
            raise TooLarge(
                f"the event frame would be {size:,} bytes, over the {limit:,}-byte frame limit "
                "clients accept; send a smaller payload"
            )
        prior = self.current(entity_id)
        state = self._merge(prior, event_type, payload)
        if state is not None:
            measured = len(_ENCODER.encode(state))
            self._check_entity(entity_id, len(_ENCODER.encode(entity_id)), measured)
            self._bounds[entity_id] = measured
            if self._ceiling is not None and measured > self._ceiling:
                self._ceiling = measured
        else:
            self._bounds.pop(entity_id, None)
        record = LogRecord(self.topic, self.epoch, seq, token, text)
        if not self._sequenced:
            self._storage.append(self.key, record, entity_id, state)
            self._kept += 1
            if self._kept > self._retention:
                self._storage.trim(self.key, self._retention)
                self._kept = self._retention
        self._staged[entity_id] = state
        self._staged_seq[entity_id] = seq
        self._head = seq
        staged = Staged(
            self,
            record,
            entity_id,
            state,
            event_type,
            event.payload,
            event.occurred_at,
            version,
            None,
            event,
        )
        if self._shared:
            self._pending.append(staged)
        return staged

    def _check_entity(self, entity_id: str, id_bytes: int, state_bytes: int) -> None:
        size = self._entity_overhead + id_bytes + state_bytes
        limit = self._max_frame_size
        if size > limit:
            raise TooLarge(
                f"entity {entity_id!r} would grow to {size:,} bytes in a snapshot, over the "
                f"{limit:,}-byte frame limit clients accept; keep entity states smaller"
            )

    def stage_many(
        self,
        events: Prepared,
        occurred_at: datetime,
        version: int = 1,
        keys: list[IdemKey | None] | None = None,
    ) -> tuple[list[Staged], TooLarge | None]:
        """:meth:`stage` of each event in order, in one pass; the same frames, byte for byte.

        Every event gets ``occurred_at``. The frame text is spliced from the encoded parts
        (nothing is encoded here) and the entity's state is encoded only when a bound says
        it could be over the frame limit: the encoding of a shallow merge of two objects is
        at most the sum of their encodings, so an entity's bound grows by each payload's
        size and is re-measured exactly when it reaches the limit. Stops at the first
        event :class:`TooLarge` refuses: the events before it are staged and returned with
        the error (nothing of it or after it is staged).

        The default merge (:func:`~rtnb.core.merge.shallow_merge`) is inlined here, the
        same steps in the same order; a custom one is called (and its states measured).
        ``keys``: each event's idempotency key, carried by its :class:`Staged` (``Keys``
        puts them in flight).
        """
        if self._sequenced:
            raise ValueError("stage_many is for stores that do not assign sequences")
        first = max(self._head, self.latest) + 1
        tokens = self._minter.mint_range(first, len(events.types))
        head = f'{{"op":"event","id":"{self.id_prefix}'
        middle = f',"topic":{self._topic_json},"sequence":'
        at = f',"occurredAt":{_ENCODER.encode(occurred_at).decode()},"replayToken":"'
        tail = f',"version":{version}}}'
        if self._merge is shallow_merge and self._fits(events):
            parts = (head, middle, at, tail)
            staged = self._stage_columns(events, occurred_at, version, first, tokens, parts, keys)
            if staged is not None:
                return staged, None
        out: list[Staged] = []
        records: list[LogRecord] = []
        states: list[dict[str, Any] | None] = []
        error: TooLarge | None = None
        limit = self._max_frame_size
        overhead = self._entity_overhead
        merge = self._merge
        shallow = merge is shallow_merge
        entities_get, bounds = self.entities.get, self._bounds
        staged_map = self._staged
        staged_get = staged_map.get
        encode, topic, epoch = _ENCODER.encode, self.topic, self.epoch
        ceiling = self._ceiling
        deleted, cmid = DELETED_SUFFIX, CLIENT_MUTATION_ID
        seq = first - 1
        for (
            event_type,
            entity_id,
            payload,
            payload_json,
            type_json,
            id_json,
            nbytes,
            id_bytes,
            token,
            key,
        ) in zip(
            events.types,
            events.ids,
            events.payloads,
            events.payload_json,
            events.type_json,
            events.id_json,
            events.payload_bytes,
            events.id_bytes,
            tokens,
            repeat(None) if keys is None else keys,
            strict=False,
        ):
            seq += 1
            text = (
                f'{head}{seq}","type":{type_json}{middle}{seq},"entityId":{id_json}'
                f'{at}{token}","payload":{payload_json}{tail}'
            )
            if len(text) * 4 > limit:  # frame_bytes' own shortcut, inline
                size = frame_bytes(text, limit)
                if size > limit:
                    error = TooLarge(
                        f"the event frame would be {size:,} bytes, over the {limit:,}-byte "
                        "frame limit clients accept; send a smaller payload"
                    )
                    break
            prior = staged_get(entity_id, _MISSING)
            if prior is _MISSING:
                prior = entities_get(entity_id)
            if not shallow:
                state = merge(prior, event_type, payload)
            elif event_type.endswith(deleted):
                state = None
            else:  # shallow_merge: dict(prior) if prior else {}, updated with the payload
                state = {**prior, **payload} if prior else {**payload}
                if cmid in state:
                    del state[cmid]
            if state is None:
                bounds.pop(entity_id, None)
            else:
                bound = bounds.get(entity_id) if prior is not None else 0
                if bound is None or not shallow:
                    bound = limit + 1  # unknown: measure
                else:
                    bound += nbytes
                if overhead + id_bytes + bound > limit:
                    bound = len(encode(state))
                    try:
                        self._check_entity(entity_id, id_bytes, bound)
                    except TooLarge as exc:
                        error = exc
                        break
                bounds[entity_id] = bound
                if ceiling is not None and bound > ceiling:
                    ceiling = bound
            record = LogRecord(topic, epoch, seq, token, text)
            records.append(record)
            states.append(state)
            staged_map[entity_id] = state
            out.append(
                Staged(
                    self, record, entity_id, state, event_type, payload, occurred_at, version, key
                )
            )
        self._ceiling = ceiling
        if records:
            count = len(records)
            ids = events.ids if count == len(events.ids) else events.ids[:count]
            self._append_staged(out, records, ids, states, first)
        return out, error

    def _append_staged(
        self,
        out: list[Staged],
        records: list[LogRecord],
        ids: list[str],
        states: list[dict[str, Any] | None],
        first: int,
    ) -> None:
        """Hand the records staged from ``first`` on to storage (and retention)."""
        count = len(records)
        self._staged_seq.update(zip(ids, range(first, first + count), strict=True))
        self._storage.append_many(self.key, records, ids, states)
        if self._shared:
            self._pending.extend(out)
        self._kept += count
        if self._kept > self._retention:
            self._storage.trim(self.key, self._retention)
            self._kept = self._retention
        self._head = first + count - 1

    def _fits(self, events: Prepared) -> bool:
        """Whether no entity state can reach the frame limit with ``events`` (and nothing
        is deleted): the shallow merge's encoding is at most the sum of its parts' encodings,
        so every state stays under :attr:`_ceiling` plus the batch's payload bytes."""
        if not events.types:
            return False
        room = (
            self._max_frame_size
            - self._entity_overhead
            - max(events.id_bytes)
            - sum(events.payload_bytes)
        )
        if room < 0 or any(map(str.endswith, set(events.types), repeat(DELETED_SUFFIX))):
            return False
        ceiling = self._ceiling
        if ceiling is None or ceiling > room:
            if self._head < self._measure_at:
                return False
            # Measure every state (committed and staged): at most once per len(entities)
            # events staged (and per _MEASURE_EVERY), so at most one encode per event even
            # when it does not help.
            states = chain(self.entities.values(), self._staged.values())
            ceiling = self._ceiling = max(map(len, map(_ENCODER.encode, states)), default=0)
            self._measure_at = self._head + max(len(self.entities), _MEASURE_EVERY)
        return ceiling <= room

    def _stage_columns(
        self,
        events: Prepared,
        occurred_at: datetime,
        version: int,
        first: int,
        tokens: list[str],
        parts: tuple[str, str, str, str],
        keys: list[IdemKey | None] | None,
    ) -> list[Staged] | None:
        """:meth:`stage_many`'s loop column by column, when :meth:`_fits` says no entity can
        reach the limit and no event deletes; None (nothing staged) if a frame could be over
        the limit. The merge is ``prior | payload`` (``{**prior, **payload}``, the same dict),
        each entity's later events in the batch merged on its earlier ones."""
        n = len(events.types)
        ids, payloads = events.ids, events.payloads
        seqs = list(map(str, range(first, first + n)))
        head, middle, at, tail = parts  # the frame's fixed text (``stage_many``)
        texts = [
            f'{head}{seq}","type":{type_json}{middle}{seq},"entityId":{id_json}'
            f'{at}{token}","payload":{payload_json}{tail}'
            for seq, type_json, id_json, token, payload_json in zip(
                seqs, events.type_json, events.id_json, tokens, events.payload_json, strict=True
            )
        ]
        limit = self._max_frame_size
        if max(map(len, texts)) * 4 > limit and any(  # frame_bytes' own shortcut first
            frame_bytes(text, limit) > limit for text in texts
        ):
            return None
        staged_map = self._staged
        if staged_map:  # events staged and not committed yet: merged on those
            entities_get = self.entities.get
            priors = [
                (staged_map[e] if e in staged_map else entities_get(e)) or _EMPTY for e in ids
            ]
        else:
            priors = list(map(self.entities.get, ids, repeat(_EMPTY)))
        states: list[dict[str, Any]] = list(map(operator.or_, priors, payloads))
        first_at = dict(zip(reversed(ids), range(n - 1, -1, -1), strict=True))
        if len(first_at) != n:  # an entity twice: its later events merge on its earlier ones
            latest: dict[str, dict[str, Any]] = {}
            for i in compress(range(n), map(operator.ne, map(first_at.__getitem__, ids), count())):
                entity_id = ids[i]
                prior = latest.get(entity_id)
                if prior is None:
                    prior = states[first_at[entity_id]]
                state = latest[entity_id] = prior | payloads[i]
                states[i] = state
        cmid = CLIENT_MUTATION_ID
        if any(map(operator.contains, states, repeat(cmid))):
            # Dropped after the merges, not between them: the same keys in the same order.
            for state in states:
                state.pop(cmid, None)
        staged_map.update(zip(ids, states, strict=True))
        self._bounds.clear()  # not kept per entity here: the ceiling bounds them all
        self._ceiling = (self._ceiling or 0) + sum(events.payload_bytes)
        topic, epoch = self.topic, self.epoch
        records = list(
            map(LogRecord, repeat(topic), repeat(epoch), range(first, first + n), tokens, texts)
        )
        out = list(
            map(
                Staged,
                repeat(self),
                records,
                ids,
                states,
                events.types,
                payloads,
                repeat(occurred_at),
                repeat(version),
                repeat(None) if keys is None else keys,
            )
        )
        self._append_staged(out, records, ids, states, first)  # type: ignore[arg-type]
        return out

    def _build(
        self,
        seq: int,
        event_type: str,
        payload: Mapping[str, Any],
        entity_id: str,
        occurred_at: datetime | None,
        version: int,
    ) -> tuple[Event, str]:
        event = Event(
            id=self.id_prefix + str(seq),
            type=event_type,
            topic=self.topic,
            sequence=seq,
            entity_id=entity_id,
            occurred_at=occurred_at or datetime.now(UTC),
            replay_token=self._minter.mint(seq),
            payload=dict(payload),
            version=version,
        )
        return event, encode_str(event)

    # -- a sequenced store (Redis): events committed elsewhere, in sequence order ---------

    def _load_mirror(self) -> None:
        """Build the records of the events the store loaded (frames minted here)."""
        records = self.records_of(self._storage.take_loaded(self.key))
        self._storage.set_records(self.key, records[-self._retention :])

    def records_of(self, entries: list[tuple[int, bytes]]) -> list[LogRecord]:
        """The records of events as a sequenced store keeps them (frames minted here)."""
        records = []
        for seq, body in entries:
            entity_id, event_type, payload, occurred_at, version = _BODY(body)
            event, text = self._build(seq, event_type, payload, entity_id, occurred_at, version)
            records.append(LogRecord(self.topic, self.epoch, seq, event.replay_token, text))
        return records

    def ingest(
        self,
        seq: int,
        entity_id: str,
        event_type: str,
        payload: Mapping[str, Any],
        *,
        occurred_at: datetime,
        version: int,
    ) -> tuple[LogRecord | None, Event]:
        """Commit the event the store put at ``seq`` (the next one); ``None`` if already here.

        The event is rebuilt from what the store keeps, so every gateway sends the
        same frame; the state is merged on the committed state, in sequence order.
        """
        event, text = self._build(seq, event_type, payload, entity_id, occurred_at, version)
        if seq <= self.latest:
            return None, event
        if seq != self.latest + 1:
            raise ValueError(f"{self.topic}: ingesting sequence {seq} after {self.latest}")
        state = self._merge(self.entities.get(entity_id), event_type, payload)
        record = LogRecord(self.topic, self.epoch, seq, event.replay_token, text)
        self._storage.append(self.key, record, entity_id, state)
        self._set_entity(entity_id, state, seq)
        self.latest = seq
        return record, event

    def _set_entity(self, entity_id: str, state: dict[str, Any] | None, seq: int) -> None:
        """The entity's committed state and sequence (None: deleted)."""
        if state is None:
            self.entities.pop(entity_id, None)
            self.entity_sequence.pop(entity_id, None)
        else:
            self.entities[entity_id] = state
            self.entity_sequence[entity_id] = seq

    def settle(self, staged: Staged) -> None:
        """Forget a staged event the sequenced store committed (or refused)."""
        self._unstage(staged.entity_id, staged.record.sequence)

    def _unstage(self, entity_id: str, seq: int) -> None:
        """Forget the entity's staged state if ``seq`` is its last staged event."""
        if self._staged_seq.get(entity_id) == seq:
            del self._staged_seq[entity_id]
            del self._staged[entity_id]

    def commit(self, staged: Staged) -> None:
        """Make a staged event (now durable) visible: move the high watermark past it."""
        seq = staged.record.sequence
        if seq != self.latest + 1:
            raise ValueError(f"{self.topic}: committing sequence {seq} after {self.latest}")
        entity_id = staged.entity_id
        self._set_entity(entity_id, staged.state, seq)
        self._unstage(entity_id, seq)
        self.latest = seq
        if seq == self._head:
            self._pending.clear()

    def commit_many(self, run: list[Staged]) -> None:
        """:meth:`commit` of each staged event of this log in ``run``, in order, in one pass.

        The common case in C: a run from the next sequence to the last staged one that
        deletes nothing (each entity's last state wins; nothing stays staged). Staging
        numbers events one after another, so a run that starts at the next sequence, ends
        at the last staged one and holds as many events holds each sequence once, in order.
        """
        latest = self.latest
        head = self._head
        if (
            run
            and run[0].record.sequence == latest + 1
            and run[-1].record.sequence == head
            and head - latest == len(run)
        ):
            states = list(map(_STATE, run))
            if None not in states:
                ids = list(map(_ENTITY_ID, run))
                self.entities.update(zip(ids, states, strict=True))
                self.entity_sequence.update(zip(ids, range(latest + 1, head + 1), strict=True))
                self._staged.clear()
                self._staged_seq.clear()
                self._pending.clear()
                self.latest = head
                return
        entities, sequences = self.entities, self.entity_sequence
        staged_map, staged_seq = self._staged, self._staged_seq
        for item in run:
            seq = item.record.sequence
            if seq != latest + 1:
                self.latest = latest
                raise ValueError(f"{self.topic}: committing sequence {seq} after {latest}")
            entity_id, state = item.entity_id, item.state
            if state is None:
                entities.pop(entity_id, None)
                sequences.pop(entity_id, None)
            else:
                entities[entity_id] = state
                sequences[entity_id] = seq
            if staged_seq.get(entity_id) == seq:
                del staged_seq[entity_id]
                del staged_map[entity_id]
            latest = seq
        self.latest = latest
        if self._pending:  # keep only what is still staged (``_appended``)
            if latest == self._head:
                self._pending.clear()
            else:
                self._pending = [s for s in self._pending if s.record.sequence > latest]

    def append(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        entity_id: str,
        *,
        occurred_at: datetime | None = None,
        version: int = 1,
    ) -> tuple[LogRecord, Event]:
        """Stage and commit one event at once (tests and tools; the server uses the hub)."""
        staged = self.stage(
            event_type, payload, entity_id, occurred_at=occurred_at, version=version
        )
        self.commit(staged)
        return staged.record, staged.event

    def current(self, entity_id: str) -> dict[str, Any] | None:
        """The entity's state including staged events (what the next event builds on)."""
        staged = self._staged
        return staged[entity_id] if entity_id in staged else self.entities.get(entity_id)

    # -- reading -------------------------------------------------------------

    def token(self, position: int | None = None) -> str:
        """The replay token for ``position`` (default: the latest committed event)."""
        return self._minter.mint(self.latest if position is None else position)

    def snapshot(self) -> Snapshot:
        """Every entity's current state, with the log position it reflects."""
        entities = [
            SnapshotEntity(entity_id=e, state=s, sequence=self.entity_sequence[e])
            for e, s in self.entities.items()
        ]
        return Snapshot(
            topic=self.topic, entities=entities, token=self.token(), sequence=self.latest
        )

    def snapshot_texts(self, max_bytes: int = SNAPSHOT_CHUNK_BYTES) -> list[str]:
        """The snapshot as encoded frames, each at most ``max_bytes`` UTF-8 bytes.

        Clients refuse frames over the frame limit before parsing; a topic with
        100,000 entities is several MiB, so it travels in parts marked ``more``,
        split by encoded bytes. One entity larger than ``max_bytes`` travels
        alone (``stage`` refused any entity that would not fit the frame limit).
        """
        snap = self.snapshot()
        text = encode_str(snap)
        if frame_bytes(text, max_bytes) <= max_bytes or len(snap.entities) < 2:
            return [text]
        head, tail = self._snapshot_shell(snap.token, snap.sequence)
        budget = max_bytes - len(head) - len(tail)
        parts: list[list[bytes]] = [[]]
        size = 0
        for entity in snap.entities:
            piece = _ENCODER.encode(entity)
            cost = len(piece) + (1 if parts[-1] else 0)
            if parts[-1] and size + cost > budget:
                parts.append([])
                size, cost = 0, len(piece)
            parts[-1].append(piece)
            size += cost
        last = len(parts) - 1
        more = tail.replace(b'"more":false}', b'"more":true}')
        return [
            (head + b",".join(part) + (more if i < last else tail)).decode()
            for i, part in enumerate(parts)
        ]

    def _snapshot_shell(self, token: str | None, sequence: int) -> tuple[bytes, bytes]:
        """The bytes of a snapshot frame before and after its entities (``more: false``)."""
        empty = _ENCODER.encode(
            Snapshot(topic=self.topic, entities=[], token=token, sequence=sequence)
        )
        at = empty.index(b'"entities":[]') + len(b'"entities":[')
        return empty[:at], empty[at:]

    def replay(self, token: str, fetched: Fetched | None = None) -> ReplayAnswer:
        """The events after ``token``, or ``"unavailable"`` and why; never a silent restart.

        ``fetched``: the range a sequenced store read for this token just before (replay
        by ``XRANGE``); the events committed since are taken from the retained tail.
        """
        parsed = self._tokens.parse(self.tenant, self.topic, token)
        if parsed is None:
            return "unavailable", [], "the replay token is not one this server minted"
        epoch, position = parsed
        if epoch != self.epoch:
            return "unavailable", [], "the log was reset since the token was minted (new epoch)"
        if position > self.latest:
            return "unavailable", [], "the replay token is ahead of the log"
        if fetched is not None and fetched.position == position and position < self.latest:
            if fetched.why:
                return "unavailable", [], fetched.why
            read = [r for r in fetched.records if r.sequence <= self.latest]
            after = read[-1].sequence if read else position
            tail = self.read(after)
            if after < self.latest and (not tail or tail[0].sequence != after + 1):
                return "unavailable", [], "the log moved past the range read; take a snapshot"
            return "complete", read + tail, ""
        first, _ = self._storage.bounds(self.key)
        if position < first - 1:
            return (
                "unavailable",
                [],
                f"events {position + 1}..{first - 1} are older than retention "
                f"({self._retention} events)",
            )
        return "complete", self.read(position), ""

    def read(self, after: int, limit: int | None = None) -> list[LogRecord]:
        """Committed records after ``after`` (never past the high watermark ``latest``)."""
        if after >= self.latest:
            return []
        cap = self.latest - after
        return self._storage.read(self.key, after, cap if limit is None else min(limit, cap))

    def first(self) -> int:
        return self._storage.bounds(self.key)[0]
