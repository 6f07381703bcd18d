"""HTTP endpoints: ``/snapshot``, ``/mutate``, ``/publish``, ``/healthz``, and the
helpers the streaming transports (``streams.py``: ``/sse``, ``/poll``) share.

All but ``/healthz`` take the access token in ``Authorization: Bearer`` only; a
token (or cursor) in the query string is refused (400) without being echoed,
because URLs end up in logs and browser history. Refusals carry an ``error``
frame as their JSON body: 401 (with ``WWW-Authenticate``), 403, 404, 409, 413,
408 (a body that did not arrive within ``request_timeout``), 422, 429 (with
``Retry-After``: rate limited, or ``too_many_connections`` for an identity over
``max_connections_per_identity``, which counts ``/sse``, ``/poll`` and ``/snapshot``
until their answer is sent) and, for admission shedding, 503 (with ``Retry-After``).
A body nested too deeply for the decoder is a 400 ``bad_frame``. Query parameter
names are normalised before the token-in-URL check (:func:`secret_param`).
Every answer is bounded in bytes: ``/snapshot`` is one frame (413 ``too_large``
for a snapshot that needs parts: subscribe instead).

``POST /publish`` takes an optional ``publishId`` (an idempotency key, per topic) and
``POST /mutate`` uses the ``clientMutationId``: a retry answers the original event and
stores nothing (``idempotency.py``); a write the store did not confirm is a 503
``outcome_unknown`` — it may be stored: retry with the same key.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..protocol.codec import encode_str
from ..protocol.errors import ErrorCode, RtnbError
from ..protocol.frames import Mutate, TopicName
from ..protocol.urls import secret_param
from .app import ServerRuntime
from .auth import AuthError, Identity
from .hub import StorageFailed, TopicError, error_text, validate_publish
from .idempotency import IdempotencyConflict
from .limits import IDENTITY_RETRY_AFTER
from .snapshots import SnapshotStream
from .topiclog import TooLarge, TopicLog

T = TypeVar("T")
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_STATUS_BY_CODE: dict[str, int] = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.READ_ONLY: 403,
    ErrorCode.UNKNOWN_TOPIC: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ErrorCode.INVALID_PATCH: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.OUTCOME_UNKNOWN: 503,
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: 400,
    ErrorCode.TOO_MANY_CONNECTIONS: 429,
}


class Refused(RtnbError):
    """An HTTP request refused with a status and an ``error`` frame body."""

    def __init__(self, response: Response) -> None:
        self.response = response


def refuse(
    status: int, code: str, message: str, topic: str | None = None, **headers: str
) -> Refused:
    return Refused(
        Response(
            error_text(code, message, topic),
            status_code=status,
            media_type="application/json",
            headers=headers or None,
        )
    )


def runtime_of(request: Request) -> ServerRuntime:
    runtime: ServerRuntime = request.app.state.runtime
    runtime.stats.count("http_requests")
    return runtime


def identify(request: Request, runtime: ServerRuntime) -> Identity:
    if any(secret_param(k) for k in request.query_params):
        raise refuse(
            400,
            "token_in_url",
            "tokens and cursors are accepted only in headers (Authorization: Bearer, "
            "Last-Event-ID), never in URLs; the request was refused",
        )
    try:
        who = runtime.auth.bearer(request.headers.get("authorization"))
    except AuthError as exc:
        runtime.stats.count("auth_failures")
        raise refuse(
            401, exc.code, exc.message, **{"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    wait = runtime.http_rate(who)
    if wait is not None:
        runtime.stats.count("rate_limited")
        raise refuse(
            429,
            "rate_limited",
            "too many requests; retry later",
            **{"Retry-After": retry_after(wait)},
        )
    return who


def hold(runtime: ServerRuntime, who: Identity) -> Callable[[], None]:
    """Count one connection for ``who`` until the returned release is called, or
    refuse it (429 with ``Retry-After``) at ``max_connections_per_identity``."""
    key = (who.tenant, who.user)
    per_identity = runtime.per_identity
    if not per_identity.claim(key):
        runtime.stats.count("identity_capped")
        raise refuse(
            429,
            ErrorCode.TOO_MANY_CONNECTIONS,
            per_identity.refusal(),
            **{"Retry-After": retry_after(IDENTITY_RETRY_AFTER)},
        )
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            per_identity.release(key)

    return release


class Held(Response):
    """A response that holds its identity's connection count until it is sent
    (or the peer is gone): an unread answer keeps counting."""

    def __init__(self, inner: Response, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release
        self.status_code = inner.status_code
        self.raw_headers = inner.raw_headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()


def retry_after(seconds: float) -> str:
    return str(max(1, int(seconds + 0.999)))  # Retry-After takes whole seconds


#: Retry-After of a 503 from a shared (Redis) store that did not answer: the next
#: request tries it again (the in-memory and SQLite stores' 503 means "restart").
STORE_RETRY_AFTER: Final = "1"


def _store_retry(runtime: ServerRuntime) -> dict[str, str]:
    return {"Retry-After": STORE_RETRY_AFTER} if runtime.hub.bridge is not None else {}


async def preload_topics(request: Request, runtime: ServerRuntime, who: Identity) -> None:
    """With Redis, load the topics a request names before the synchronous checks."""
    if runtime.hub.bridge is None:
        return
    names = list(dict.fromkeys(request.query_params.getlist("topic")))
    for name in names[: runtime.config.max_subscriptions]:
        if _TOPIC.match(name):
            await runtime.hub.preload(who, name)


def requested_topics(
    request: Request,
    runtime: ServerRuntime,
    who: Identity,
    refused: list[str] | None = None,
    *,
    allow_none: bool = False,
) -> dict[str, TopicLog]:
    """The topics a request names, checked for this identity.

    A topic the identity may not read (or that does not exist) refuses the
    whole request — unless ``refused`` is given: streams collect an ``error``
    frame per refused topic there and go on with the others, exactly as a
    WebSocket ``subscribe`` would (4403 on one topic leaves the rest alone).
    ``allow_none``: naming no topic is allowed (``/poll`` as a probe).
    """
    names = list(dict.fromkeys(request.query_params.getlist("topic")))
    if not names and not allow_none:
        raise refuse(400, "bad_request", "name at least one topic: ?topic=a&topic=b")
    cap = runtime.config.max_subscriptions
    if len(names) > cap and refused is not None:
        # A stream refuses the topics past the cap one by one, as a WebSocket
        # subscribe does, and serves the rest (the client shows them refused).
        for name in names[cap:]:
            refused.append(
                TopicError(
                    "too_many_subscriptions",
                    f"a connection may hold at most {cap} subscriptions; "
                    "unsubscribe from one first",
                    name,
                ).frame()
            )
        names = names[:cap]
    if len(names) > cap:
        raise refuse(400, "too_many_subscriptions", f"at most {cap} topics per request")
    logs: dict[str, TopicLog] = {}
    for name in names:
        if not _TOPIC.match(name):
            raise refuse(400, "bad_request", "topic names are 1-128 of A-Z a-z 0-9 _ . : -")
        try:
            logs[name] = runtime.hub.check(who, name)
        except TopicError as exc:
            if refused is None:
                headers = _store_retry(runtime) if exc.code == "unavailable" else {}
                raise refuse(
                    _STATUS_BY_CODE[exc.code], exc.code, exc.message, exc.topic, **headers
                ) from None
            refused.append(exc.frame())
    return logs


# -- snapshot, mutate, publish, healthz --------------------------------------------------


async def snapshot(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        who = identify(request, runtime)
        await preload_topics(request, runtime, who)
        logs = requested_topics(request, runtime, who)
        if len(logs) != 1:
            raise refuse(400, "bad_request", "ask for exactly one topic: /snapshot?topic=name")
        release = hold(runtime, who)
    except Refused as refused:
        return refused.response
    (topic_log,) = logs.values()
    # One frame, never over the frame limit: a larger snapshot travels in parts
    # (``more: true``), which only a subscription carries (made one part at a time).
    limit = runtime.config.max_frame_size
    stream = SnapshotStream(topic_log, max_bytes=limit)
    text = stream.next_part()
    if not stream.done:
        release()
        return refuse(
            413,
            ErrorCode.TOO_LARGE,
            f"the snapshot of topic {topic_log.topic!r} is larger than one {limit:,}-byte "
            "frame; subscribe to it (WebSocket, SSE or /poll), which sends it in parts",
            topic_log.topic,
        ).response
    return Held(Response(text, media_type="application/json"), release)


_mutate_decoder = msgspec.json.Decoder(Mutate)


PublishId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class PublishRequest(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /publish`` (admins only)."""

    topic: TopicName
    type: str
    entity_id: str
    payload: dict[str, Any] = {}
    version: int = 1
    #: an idempotency key (per topic): a retry answers the original event, stores nothing
    publish_id: PublishId | None = None


_publish_decoder = msgspec.json.Decoder(PublishRequest)


async def _body(request: Request, runtime: ServerRuntime) -> bytes:
    limit = runtime.config.max_frame_size
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refuse(413, "frame_too_large", f"the body exceeds the {limit:,}-byte limit")
    chunks: list[bytes] = []
    size = 0
    timeout = runtime.config.request_timeout
    try:
        async with asyncio.timeout(timeout):  # a body trickled in must not hold the socket
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise refuse(
                        413, "frame_too_large", f"the body exceeds the {limit:,}-byte limit"
                    )
                chunks.append(chunk)
    except TimeoutError:
        runtime.stats.count("request_timeouts")
        # The rest of the body may still come: the connection cannot serve another
        # request, so say so and close it now rather than after the keep-alive timeout.
        raise refuse(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout:g} s",
            Connection="close",
        ) from None
    return b"".join(chunks)


def _decode(decoder: msgspec.json.Decoder[T], body: bytes, what: str) -> T:
    """Decode a request body; a malformed one is a 400 ``bad_frame``, never a 500."""
    try:
        return decoder.decode(body)
    except msgspec.MsgspecError as exc:
        raise refuse(400, "bad_frame", f"invalid {what} body: {_short(exc)}") from None
    except RecursionError:  # msgspec recurses per nesting level
        raise refuse(
            400, "bad_frame", f"invalid {what} body: JSON nested too deeply; flatten it"
        ) from None


async def mutate(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        who = identify(request, runtime)
        frame = _decode(_mutate_decoder, await _body(request, runtime), "mutate")
    except Refused as refused:
        return refused.response
    outcome = await runtime.mutations.apply_shared(runtime.hub, who, frame)
    if outcome.rejected is not None:
        runtime.stats.count("mutations_rejected")
        status = _STATUS_BY_CODE.get(outcome.rejected.code, 422)
        headers = _store_retry(runtime) if status == 503 else None
        return Response(
            encode_str(outcome.rejected), status, headers, media_type="application/json"
        )
    assert outcome.event is not None
    if not outcome.duplicate:
        runtime.stats.count("mutations_applied")
    if not outcome.committed:
        try:  # acknowledged only once durable (a retry of one in flight waits for it too)
            await runtime.hub.committed()
        except StorageFailed as exc:
            return refuse(503, exc.code, str(exc), **_store_retry(runtime)).response
    try:
        event = runtime.hub.resolve(outcome.event)
    except IdempotencyConflict as exc:  # another gateway stored the id for another patch
        runtime.stats.count("mutations_rejected")
        return refuse(409, "idempotency_conflict", str(exc), frame.topic).response
    return Response(encode_str(event), media_type="application/json")


async def publish(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        who = identify(request, runtime)
        if not who.at_least("admin"):
            raise refuse(403, "forbidden", "publishing needs an admin token")
        req = _decode(_publish_decoder, await _body(request, runtime), "publish")
        try:
            validate_publish(req.topic, req.type, req.entity_id)
        except ValueError as exc:
            raise refuse(400, "bad_frame", str(exc)) from None
    except Refused as refused:
        return refused.response
    hub = runtime.hub
    try:  # with Redis, a topic new to this gateway is loaded first, without blocking the loop
        await hub.prepare_publish(who.tenant, req.topic)
        event, committed = hub.publish_once(
            who.tenant,
            req.topic,
            req.type,
            req.payload,
            req.entity_id,
            req.publish_id,
            version=req.version,
        )
        if committed:  # stored before: the original event, nothing stored now
            return Response(encode_str(event), media_type="application/json")
    except TooLarge as exc:
        return refuse(413, "too_large", str(exc), req.topic).response
    except IdempotencyConflict as exc:
        return refuse(409, "idempotency_conflict", str(exc), req.topic).response
    except StorageFailed as exc:
        return refuse(503, exc.code, str(exc), **_store_retry(runtime)).response
    try:  # acknowledged only once durable and fanned out
        await hub.committed()
        event = hub.resolve(event)
    except StorageFailed as exc:
        return refuse(503, exc.code, str(exc), **_store_retry(runtime)).response
    except IdempotencyConflict as exc:  # another gateway stored the key for other content
        return refuse(409, "idempotency_conflict", str(exc), req.topic).response
    return Response(encode_str(event), media_type="application/json")


def _short(exc: msgspec.MsgspecError) -> str:
    # msgspec messages name the JSON path and expected type; they never quote values
    # except unknown tags, which we replace (a tag could be anything, even a token).
    text = str(exc).replace("`", "")
    return "unknown op" if "Invalid value" in text and "$.op" in text else text


async def healthz(request: Request) -> Response:
    runtime: ServerRuntime = request.app.state.runtime
    body = {
        "status": "ok",
        "uptime": round(time.time() - runtime.started_at, 3),
        "connections": len(runtime.hub.sessions),
        "published": runtime.hub.published,
    }
    return Response(msgspec.json.encode(body), media_type="application/json")
