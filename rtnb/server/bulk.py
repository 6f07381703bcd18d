"""``publish_many`` in bulk: the batch prepared in the publishing thread, staged in one pass.

The per-event work of ``srv.publish_many`` (issue 22, ``docs/throughput.md``) split in two:

* :func:`prepare`, in the caller's thread: validate, copy (a JSON round trip, in JSON
  types) and encode each event, column by column — one C call per step where it can;
* :func:`publish`, on the server loop: one clock read, then the batch staged by
  :meth:`~rtnb.server.topiclog.TopicLog.stage_many`, which splices each frame's text from
  the encoded parts (the same bytes as ``encode_str(Event(...))``), idempotency keys
  answered or staged as ``publish_once`` would, event by event.

A store that assigns sequences itself (Redis) takes the prepared events one by one.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from itertools import accumulate, repeat
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..protocol.frames import Event
from .hub import validate_publish
from .idempotency import IdemKey, IdempotencyConflict, sorted_json
from .staged import Staged
from .topiclog import TooLarge

if TYPE_CHECKING:
    from .hub import Hub


def check_publish_id(publish_id: str | None) -> None:
    if publish_id is not None and (
        not isinstance(publish_id, str) or not 1 <= len(publish_id) <= 256
    ):
        raise ValueError(f"publish_id must be a string of 1-256 characters, got {publish_id!r}")


_blake2b: Final = hashlib.blake2b
_encode_json: Final = msgspec.json.Encoder().encode
_decode_json: Final = msgspec.json.decode


class Prepared:
    """A ``publish_many`` batch prepared by the publishing thread (:func:`prepare`), as columns.

    Per event: ``types``, ``ids``, ``payloads`` (a decoded copy, in JSON types),
    ``payload_json`` (its encoding: ``encode_str(Event(..., payload=payload))`` holds it
    verbatim), ``type_json`` / ``id_json`` (the encoded strings), ``payload_bytes`` /
    ``id_bytes`` (UTF-8 bytes of ``payload_json`` / ``id_json``). Columns rather than a tuple
    per event: such tuples hold a dict, so the garbage collector tracks each of them.
    """

    __slots__ = (
        "id_bytes",
        "id_json",
        "ids",
        "payload_bytes",
        "payload_json",
        "payloads",
        "type_json",
        "types",
    )

    def __init__(
        self,
        types: list[str],
        ids: list[str],
        payloads: list[dict[str, Any]],
        payload_json: list[str],
        type_json: list[str],
        id_json: list[str],
        payload_bytes: list[int],
        id_bytes: list[int],
    ) -> None:
        self.types = types
        self.ids = ids
        self.payloads = payloads
        self.payload_json = payload_json
        self.type_json = type_json
        self.id_json = id_json
        self.payload_bytes = payload_bytes
        self.id_bytes = id_bytes

    def __len__(self) -> int:
        return len(self.types)

    def take(self, at: list[int]) -> Prepared:
        """The events at indices ``at``, in that order."""
        columns = [[column[i] for i in at] for column in self._columns()]
        return Prepared(*columns)

    def _columns(self) -> tuple[list[Any], ...]:
        return (
            self.types,
            self.ids,
            self.payloads,
            self.payload_json,
            self.type_json,
            self.id_json,
            self.payload_bytes,
            self.id_bytes,
        )


_EMPTY: Final = Prepared([], [], [], [], [], [], [], [])


def prepare(
    topic: str,
    tenant: str,
    events: Iterable[
        tuple[str, str, Mapping[str, Any]] | tuple[str, str, Mapping[str, Any], str | None]
    ],
) -> tuple[Prepared, list[IdemKey | None] | None]:
    """``publish_many``'s work in the publishing thread: validate, copy and encode each event.

    Column by column, without a Python loop per event where one C call does: a type or
    entity id is validated (and encoded) once per distinct value, each payload encoded
    once, the batch decoded in one call (the copy in JSON types the server keeps) and the
    copies re-encoded in one call to check that their encoding is the one spliced into the
    frame (it differs only when keys collided, e.g. ``1`` and ``"1"``: those payloads are
    then encoded again from the copy). Keys get their content digest here too. Anything
    refused is checked again event by event, so the error is the first event's, as before.
    """
    rows = events if type(events) is list else list(events)
    if not rows:
        return _EMPTY, None
    try:
        types = list(map(_first, rows))
        ids = list(map(_second, rows))
        payloads = list(map(_third, rows))
        if set(map(type, types)) | set(map(type, ids)) != {str}:
            raise ValueError("a type or entity id is not a str")
        # Valid names seen before are looked up (a topic's entities recur batch after batch).
        type_json: list[str | None] = list(map(_name_json.get, types))
        id_json: list[str | None] = list(map(_name_json.get, ids))
        id_bytes: list[int | None] = list(map(_name_bytes.get, ids))
        if None in type_json or None in id_json or None in id_bytes:
            json_of, bytes_of = _learn({*types, *ids})
            type_json = list(map(json_of.__getitem__, types))
            id_json = list(map(json_of.__getitem__, ids))
            id_bytes = list(map(bytes_of.__getitem__, ids))
        validate_publish(topic, "-", "-")
        if set(map(type, payloads)) == _DICTS:
            raws = list(map(_encode_json, payloads))
        else:
            raws = [_encode_json(p if type(p) is dict else dict(p)) for p in payloads]
        publish_ids = (
            [row[3] if len(row) > 3 else None for row in rows]  # type: ignore[misc]
            if max(map(len, rows)) > 3
            else None
        )
        for publish_id in publish_ids or ():
            check_publish_id(publish_id)
    except Exception:
        _check_each(topic, rows)  # raises the first event's error
        raise
    joined = b"[" + b",".join(raws) + b"]"
    copies: list[dict[str, Any]] = _decode_json(joined)
    if _encode_json(copies) != joined:
        raws = [_encode_json(copy) for copy in copies]
    prepared = Prepared(
        types,
        ids,
        copies,
        list(map(bytes.decode, raws)),
        type_json,  # type: ignore[arg-type]
        id_json,  # type: ignore[arg-type]
        list(map(len, raws)),
        id_bytes,  # type: ignore[arg-type]
    )
    if publish_ids is None or all(p is None for p in publish_ids):
        return prepared, None
    return prepared, _keys(tenant, topic, prepared, publish_ids)


def _keys(
    tenant: str, topic: str, prepared: Prepared, publish_ids: list[str | None]
) -> list[IdemKey | None]:
    """Each event's key: its ``publish_id`` and ``digest(topic, type, entity_id, payload, 1)``.

    The digests of the whole batch from one sorted encode of it, cut into each event's
    encoding by lengths known from the unsorted encodings (sorting an object's keys moves
    bytes, it does not change how many), then hashed in C; if the lengths do not add up,
    each event is encoded on its own (the definition, as stored by SQLite and Redis).
    """
    n = len(prepared)
    rows = list(zip(repeat(topic), prepared.types, prepared.ids, prepared.payloads, repeat(1)))
    whole = sorted_json(rows)
    topic_bytes = len(_encode_json(topic))
    # ``[topic,type,id,payload,1]``: 4 commas, 2 brackets and the "1" around the parts.
    lengths = list(
        map(
            sum,
            zip(
                repeat(topic_bytes + 7),
                map(_json_bytes, prepared.type_json),
                prepared.id_bytes,
                prepared.payload_bytes,
            ),
        )
    )
    starts = list(accumulate(map((1).__add__, lengths), initial=1))[:n]
    if sum(lengths) + n + 1 == len(whole) and whole[starts[-1] + lengths[-1]] == 93:  # "]"
        parts: Iterable[bytes] = map(
            whole.__getitem__, map(slice, starts, map(operator.add, starts, lengths))
        )
    else:  # not one encoding per event as counted: encode each
        parts = map(sorted_json, rows)
    # A copy of an empty BLAKE2b-128 state per event: ~0.3 µs less than the constructor,
    # which parses its ten keyword arguments each time.
    fresh = _BLAKE2B_16.copy
    digests: list[bytes] = []
    append = digests.append
    for part in parts:
        h = fresh()
        h.update(part)
        append(h.digest())
    scope = (tenant, topic)
    if None not in publish_ids:
        key_ids = list(zip(repeat(tenant), repeat(topic), publish_ids))
        return list(map(IdemKey, repeat(scope), publish_ids, digests, key_ids))  # type: ignore[arg-type]
    return [
        None if p is None else IdemKey.of(scope, p, d)
        for p, d in zip(publish_ids, digests, strict=True)
    ]


_BLAKE2B_16: Final = _blake2b(digest_size=16)  # never updated: only copied


def _json_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


_DICTS: Final = {dict}
_first: Final = operator.itemgetter(0)
_second: Final = operator.itemgetter(1)
_third: Final = operator.itemgetter(2)
_MAX_NAME: Final = 1024
#: Valid types and entity ids seen by :func:`prepare`, and their JSON encodings and its
#: UTF-8 bytes; forgotten all at once past :data:`_MAX_NAMES` names or
#: :data:`_MAX_NAME_CHARS` characters of names (a bounded memory: ids may be 1,024 long).
_name_json: dict[str, str] = {}
_name_bytes: dict[str, int] = {}
_name_chars = [0]  # characters of the names in the cache
_MAX_NAMES: Final = 100_000
_MAX_NAME_CHARS: Final = 4_000_000


def _learn(names: set[str]) -> tuple[dict[str, str], dict[str, int]]:
    """Validate and encode ``names`` (all ``str``; ValueError if one is invalid): their JSON
    and its UTF-8 bytes, also kept in the name cache (shared by every publishing thread)."""
    for name in names:
        if not 1 <= len(name) <= _MAX_NAME:
            raise ValueError(name)
    json_of: dict[str, str] = {}
    bytes_of: dict[str, int] = {}
    for name in names:
        raw = _encode_json(name)
        bytes_of[name] = len(raw)
        json_of[name] = raw.decode()
    chars = sum(map(len, names))
    if len(_name_json) + len(names) > _MAX_NAMES or _name_chars[0] + chars > _MAX_NAME_CHARS:
        _name_json.clear()
        _name_bytes.clear()
        _name_chars[0] = 0
    _name_chars[0] += chars
    _name_bytes.update(bytes_of)
    _name_json.update(json_of)
    return json_of, bytes_of


def _check_each(topic: str, events: list[Any]) -> None:
    """Refuse the first event ``publish_many`` cannot take, as ``publish`` would."""
    for event_type, entity_id, payload, *rest in events:
        validate_publish(topic, event_type, entity_id)
        check_publish_id(rest[0] if rest else None)
        try:
            _encode_json(payload if type(payload) is dict else dict(payload))
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"publish: the payload is not JSON-serialisable: {exc}") from None


def publish_batch(
    hub: Hub,
    tenant: str,
    topic: str,
    prepared: Prepared,
    keys: list[IdemKey | None] | None,
) -> list[Event | Staged]:
    """``publish_many`` on the server loop: one clock read, the batch staged in bulk."""
    out, error = publish_prepared(hub, tenant, topic, prepared, keys, datetime.now(UTC))
    if error is not None:
        raise TooLarge(
            f"publish_many: event #{len(out)} refused: {error}; the {len(out)} "
            "event(s) before it were published, the rest were not"
        )
    return out


def publish_prepared(
    hub: Hub,
    tenant: str,
    topic: str,
    events: Prepared,
    keys: list[IdemKey | None] | None,
    occurred_at: datetime,
) -> tuple[list[Event | Staged], TooLarge | None]:
    """:meth:`Hub.publish_once` of each prepared event in order, staged in bulk.

    ``keys``: each event's idempotency key (None: no key); an event whose key is stored
    or in flight answers that event (an :class:`Event`) and stages nothing. Returns what
    each event answers — its :class:`Staged` (``.event``) or the original event — up to
    the first one refused as too large, and that refusal (or None). A store that
    assigns sequences itself (Redis) takes the events one by one.
    """
    if hub.failed is not None:
        raise hub.failed
    if not events:
        return [], None
    topic_log = hub.log(tenant, topic)
    if hub.bridge is not None:
        return _publish_each(hub, tenant, topic, events, keys, occurred_at)
    if keys is None:
        staged, error = topic_log.stage_many(events, occurred_at)
        hub.enqueue(tenant, topic, staged)
        return list(staged), error
    key_ids = [key.id for key in keys if key is not None]
    if len(set(key_ids)) == len(key_ids) and hub.keys.fresh(key_ids):
        # Every key new and once in the batch (the common case): the loop below would stage
        # every event in one flush; the same, without the loop.
        staged, error = topic_log.stage_many(events, occurred_at, keys=keys)
        hub.keys.stage_many(staged, keys, hub.storage)
        hub.enqueue(tenant, topic, staged)
        return list(staged), error
    out: list[Event | Staged | None] = []
    pending: list[int] = []  # indices of the events to stage next
    at: list[int] = []  # where each pending event's answer goes in ``out``
    pending_keys: list[IdemKey | None] = []
    in_pending: set[tuple[str, str, str]] = set()

    def flush() -> TooLarge | None:
        # ``pending`` holds increasing indices: as many as the events means all of them.
        batch = events if len(pending) == len(events) else events.take(pending)
        staged, error = topic_log.stage_many(batch, occurred_at, keys=pending_keys)
        hub.keys.stage_many(staged, pending_keys, hub.storage)
        for item, i in zip(staged, at, strict=False):
            out[i] = item
        hub.enqueue(tenant, topic, staged)
        if error is not None:
            del out[at[len(staged)] :]
        pending.clear()
        at.clear()
        pending_keys.clear()
        in_pending.clear()
        return error

    new = hub.keys.new
    for event, key in enumerate(keys):
        if key is not None:
            if key.id not in in_pending and new(key.id):  # the common case: a fresh key
                in_pending.add(key.id)
                at.append(len(out))
                out.append(None)
                pending.append(event)
                pending_keys.append(key)
                continue
            if key.id in in_pending:  # the same key twice: the second answers the first
                error = flush()
                if error is not None:
                    return out, error  # type: ignore[return-value]
            try:
                found = hub.keys.recall(key, topic, events.ids[event], events.payloads[event])
            except IdempotencyConflict:
                error = flush()  # the events before it are published
                if error is not None:
                    return out, error  # type: ignore[return-value]
                raise
            if found is not None:
                out.append(found[0])
                continue
            in_pending.add(key.id)
        at.append(len(out))
        out.append(None)
        pending.append(event)
        pending_keys.append(key)
    error = flush()
    return out, error  # type: ignore[return-value]


def _publish_each(
    hub: Hub,
    tenant: str,
    topic: str,
    events: Prepared,
    keys: list[IdemKey | None] | None,
    occurred_at: datetime,
) -> tuple[list[Event | Staged], TooLarge | None]:
    out: list[Event | Staged] = []
    rows = zip(events.types, events.ids, events.payloads, strict=True)
    for i, (event_type, entity_id, payload) in enumerate(rows):
        key = keys[i] if keys is not None else None
        try:
            if key is None:
                event = hub.publish(
                    tenant, topic, event_type, payload, entity_id, occurred_at=occurred_at
                )
            else:
                event, _ = hub.publish_once(
                    tenant,
                    topic,
                    event_type,
                    payload,
                    entity_id,
                    key.name,
                    occurred_at=occurred_at,
                )
        except TooLarge as exc:
            return out, exc
        out.append(event)
    return out, None
