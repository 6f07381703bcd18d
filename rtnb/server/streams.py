"""The streaming HTTP transports: Server-Sent Events (``/sse``) and polling (``/poll``).

SSE (``GET /sse?topic=a&topic=b``) streams the same frames as the WebSocket:
``event`` frames as plain SSE messages whose ``id:`` is the cursor, every other
frame as an SSE event named by its ``op`` (``subscribed``, ``snapshot`` — which
also carries an ``id:`` — ``heartbeat``, ``error``). Resume with
``Last-Event-ID``. Polling (``GET /poll?topic=…&wait=S``) takes the cursor in
``Last-Event-ID`` too and answers ``{"messages": [...], "cursor": "..."}``,
long-polling up to ``wait`` seconds when nothing is new; every response ends
with a ``heartbeat``; it carries at most ``send_queue_bytes`` of events (the
cursor says where the next poll goes on) and streams a snapshot larger than one
part a part at a time (``snapshots.py``); a long poll waits at most one heartbeat interval, so a
polling client hears from the server as often as a streaming one.

Both announce the server's heartbeat interval the way the WebSocket does: the
first SSE event, and the first message of every poll response, is an
``authenticated`` frame (role, expiry, ``heartbeatInterval``) — the request
itself authenticated, so this is its answer.

Cursors (see ``tokens.py``) are the per-topic replay tokens joined by ``"."``.
For each requested topic: a token in the cursor replays what follows it
(``replay: "complete"``) or, if it is stale, from another epoch or forged,
answers ``replay: "unavailable"`` plus a snapshot; a topic the cursor does not
mention starts with a snapshot (``replay: "none"``); a cursor nothing can be
made of counts as unavailable for every topic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..protocol.codec import encode_str
from ..protocol.errors import ErrorCode
from ..protocol.frames import Authenticated, Subscribed
from .app import ServerRuntime
from .auth import Identity
from .http import (
    Held,
    Refused,
    hold,
    identify,
    preload_topics,
    refuse,
    requested_topics,
    retry_after,
    runtime_of,
)
from .hub import error_text
from .session import CLOSE_SLOW_CONSUMER, Marked, Session
from .snapshots import SnapshotStream
from .storage import LogRecord
from .tokens import join_cursor
from .topiclog import TopicLog

#: Most events one poll response carries per topic; poll again for the rest.
POLL_MAX_EVENTS: Final = 1000
#: Seconds an SSE client cut as a slow consumer is told to wait before reconnecting
#: (the ``retry:`` field and ``retry_after=`` in its last ``error`` event).
SLOW_RETRY_AFTER: Final = 1.0


def _replay_from(
    runtime: ServerRuntime, cursor: str | None, topics: list[str]
) -> dict[str, str | None]:
    """The replay token to use per topic (None: fresh subscription)."""
    if not cursor:
        return dict.fromkeys(topics)
    found = runtime.tokens.split_cursor(cursor, topics)
    if not found:  # unreadable: every topic is unavailable, never a silent restart
        return dict.fromkeys(topics, cursor)
    return {t: found.get(t) for t in topics}


async def _wait_out_cut(runtime: ServerRuntime) -> None:
    chaos = runtime.chaos
    while chaos.cut_until and chaos.is_cut():  # a silent cut: the request goes nowhere
        await asyncio.sleep(max(0.01, chaos.cut_until - time.monotonic()))


def _authenticated(runtime: ServerRuntime, who: Identity) -> str:
    return encode_str(
        Authenticated(
            tenant=who.tenant,
            user=who.user,
            role=who.role,
            expires_at=who.expires_at,
            heartbeat_interval=runtime.config.heartbeat_interval,
        )
    )


def _op(text: str) -> str:
    # Every frame is encoded with its tag first: '{"op":"heartbeat",...'.
    return text[7 : text.index('"', 7)] if text.startswith('{"op":"') else "message"


# -- SSE ----------------------------------------------------------------------------


async def sse(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        who = identify(request, runtime)
        topic_errors: list[str] = []
        await preload_topics(request, runtime, who)
        logs = requested_topics(request, runtime, who, topic_errors)
        retry = runtime.admission.try_admit()
        if retry is not None:
            runtime.stats.count("admissions_shed")
            raise refuse(
                503, "busy", "server busy; retry later", **{"Retry-After": retry_after(retry)}
            )
        release = hold(runtime, who)
    except Refused as refused:
        return refused.response
    runtime.stats.count("connections")
    hub = runtime.hub
    config = runtime.config
    session = Session("sse", config.send_queue_limit, runtime.chaos, config.send_queue_bytes)
    session.identity = who
    session.on_slow = lambda: _cut(runtime, session)
    session.on_behind = lambda: runtime.stats.count("fell_behind")
    hub.attach(session)

    def done() -> None:  # the stream ended, or never started (the peer left first)
        hub.detach(session)
        release()

    try:
        return Held(await _open_sse(request, runtime, session, logs, topic_errors), done)
    except BaseException:
        done()
        raise


async def _open_sse(
    request: Request,
    runtime: ServerRuntime,
    session: Session,
    logs: dict[str, TopicLog],
    topic_errors: list[str],
) -> Response:
    hub = runtime.hub
    who = session.identity
    assert who is not None
    session.push(_authenticated(runtime, who))
    for text in topic_errors:
        session.push(text)
    positions: dict[str, str] = {}
    replay = _replay_from(runtime, request.headers.get("last-event-id"), list(logs))
    fetched = {t: await hub.prefetch(who, t, token) for t, token in replay.items()}  # Redis
    for topic, token in replay.items():  # no await in this loop: the seams are exact
        if hub.subscribe(session, topic, token, fetched[topic]) == "complete" and token is not None:
            positions[topic] = token
    loop = asyncio.get_running_loop()
    expiry = loop.call_later(max(0.0, who.expires_at - time.time()), _expire, session)
    return StreamingResponse(
        _stream(runtime, session, positions, expiry),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _cut(runtime: ServerRuntime, session: Session) -> None:
    """A slow SSE consumer: counted and detached now, not when its stalled write ends.

    The stream ends at the next write; if the peer never reads again, the
    server's ``write_timeout`` aborts the connection (``runner.py``).
    """
    runtime.stats.count("slow_consumers")
    runtime.hub.detach(session)


def _snapshot_part(session: Session, stream: SnapshotStream, positions: dict[str, str]) -> str:
    """The next part of a streamed snapshot as an SSE event; the last moves the cursor."""
    text = session.next_part()
    if not stream.done:
        return f"event: snapshot\ndata: {text}\n\n"
    positions[stream.topic] = stream.token
    return f"event: snapshot\nid: {join_cursor(positions.values())}\ndata: {text}\n\n"


def _slow_consumer_event(reason: str) -> str:
    """The last SSE event of a stream cut as a slow consumer: why, and when to come back.

    ``retry:`` is the WHATWG reconnection time (milliseconds) for EventSource
    clients; rtnb's client reads ``retry_after=`` in the message (one hint parser,
    ``rtnb.protocol.retry``). It resumes from its own cursor: nothing is lost.
    """
    hint = f"{SLOW_RETRY_AFTER:g}"
    message = f"{reason}; reconnect and resume from Last-Event-ID; retry_after={hint}"
    frame = error_text(ErrorCode.SLOW_CONSUMER, message)
    return f"retry: {int(SLOW_RETRY_AFTER * 1000)}\nevent: error\ndata: {frame}\n\n"


def _expire(session: Session) -> None:
    session.push(error_text("token_expired", "the access token has expired; reconnect"))
    session.close(4401, "token expired")


async def _stream(
    runtime: ServerRuntime, session: Session, positions: dict[str, str], expiry: asyncio.Handle
) -> AsyncIterator[str]:
    chaos = runtime.chaos
    try:
        while True:
            await session.wait()
            if session.killed and session.close_code == CLOSE_SLOW_CONSUMER:
                yield _slow_consumer_event(session.close_reason)
                return
            if session.killed or (session.closed and not session.queue):
                return
            if chaos.cut_until and chaos.is_cut():
                chaos.count("stalled_frames", len(session.queue))
                session.clear()
                continue
            chunks: list[str] = []
            queue = session.queue
            while queue and len(chunks) < runtime.config.batch_max_messages:
                head = queue[0]
                if type(head) is SnapshotStream:  # one part per write: flow control
                    if not chunks:
                        chunks.append(_snapshot_part(session, head, positions))
                    break
                item = session.popleft()
                if type(item) is LogRecord:
                    positions[item.topic] = item.token
                    chunks.append(f"id: {join_cursor(positions.values())}\ndata: {item.text}\n\n")
                elif type(item) is Marked:
                    positions[item.topic] = item.token
                    cursor = join_cursor(positions.values())
                    chunks.append(f"event: {item.op}\nid: {cursor}\ndata: {item.text}\n\n")
                else:
                    text: str = item  # type: ignore[assignment]
                    chunks.append(f"event: {_op(text)}\ndata: {text}\n\n")
            yield "".join(chunks)
    finally:
        expiry.cancel()
        runtime.hub.detach(session)


# -- polling --------------------------------------------------------------------------


async def poll(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        who = identify(request, runtime)
        topic_errors: list[str] = []
        await preload_topics(request, runtime, who)
        # No topic named: a probe (is the server there, does it take the token?),
        # answered at once with ``authenticated`` and a heartbeat.
        logs = requested_topics(request, runtime, who, topic_errors, allow_none=True)
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            raise refuse(400, "bad_request", "wait must be a number of seconds") from None
        if not 0 <= wait <= runtime.config.poll_max_wait:
            raise refuse(
                400, "bad_request", f"wait must be within 0..{runtime.config.poll_max_wait:g} s"
            )
        release = hold(runtime, who)
    except Refused as refused:
        return refused.response
    try:
        cursor = request.headers.get("last-event-id")
        return Held(await _answer(runtime, who, logs, topic_errors, wait, cursor), release)
    except BaseException:
        release()
        raise


async def _answer(
    runtime: ServerRuntime,
    who: Identity,
    logs: dict[str, TopicLog],
    topic_errors: list[str],
    wait: float,
    last_event_id: str | None,
) -> Response:
    """One poll's answer, bounded in bytes: events up to ``send_queue_bytes`` (the
    cursor says where the next poll goes on), snapshots streamed part by part."""
    await _wait_out_cut(runtime)
    messages: list[str] = [_authenticated(runtime, who), *topic_errors]
    items: list[str | SnapshotStream] = []  # the topics' frames, in order
    budget = runtime.config.send_queue_bytes - sum(map(len, messages))
    positions: dict[str, str] = {}
    fresh = bool(topic_errors)
    hold_for = 0.0  # chaos delay_ms for this response
    replay = _replay_from(runtime, last_event_id, list(logs))
    fetched = {t: await runtime.hub.prefetch(who, t, token) for t, token in replay.items()}
    if fetched and runtime.hub.bridge is not None:  # a topic reloaded meanwhile: its new log
        logs = {t: runtime.hub.log(who.tenant, t) for t in logs}
    for topic, topic_log in logs.items():  # no await in this loop: the seams are exact
        token = replay[topic]
        status: str = "none"
        records: list[LogRecord] = []
        if token is not None:
            status, records, _ = topic_log.replay(token, fetched[topic])
        if status == "complete":
            assert token is not None
            records, budget = _within(records[:POLL_MAX_EVENTS], budget, first=not items)
            positions[topic] = records[-1].token if records else token
            if runtime.chaos.active:  # polling's "live" path: fault it like a push
                records, delay = runtime.chaos.shape(records)
                hold_for = max(hold_for, delay)
            items.extend(r.text for r in records)
            fresh = fresh or bool(records)
            continue
        snap_token = topic_log.token()
        subscribed = Subscribed(
            topic=topic,
            replay=status,  # type: ignore[arg-type]
            latest_token=snap_token,
            latest_sequence=topic_log.latest,
        )
        items.append(encode_str(subscribed))
        items.append(SnapshotStream(topic_log))  # made part by part as the answer is sent
        positions[topic] = snap_token
        fresh = True
    if not fresh and wait > 0 and logs:
        wait = min(wait, runtime.config.heartbeat_interval)  # a heartbeat is due by then
        await _long_poll(runtime, who, logs, positions, messages, wait)
    elif hold_for:
        await asyncio.sleep(hold_for)
    items.append(runtime.hub.heartbeat(logs))
    cursor = join_cursor(positions[t] for t in logs)
    headers = {"Cache-Control": "no-store"}
    streams = [item for item in items if type(item) is SnapshotStream]
    if all(stream.whole for stream in streams) and (
        sum(stream.size for stream in streams) <= runtime.config.send_queue_bytes
    ):  # small enough to answer whole (with a Content-Length)
        texts = [*messages, *(i.next_part() if type(i) is SnapshotStream else i for i in items)]
        body = '{"messages":[' + ",".join(texts) + '],"cursor":"' + cursor + '"}'  # type: ignore[arg-type]
        return Response(body, media_type="application/json", headers=headers)
    chunks = _poll_body(messages, items, cursor)
    return StreamingResponse(chunks, media_type="application/json", headers=headers)


def _within(records: list[LogRecord], budget: int, *, first: bool) -> tuple[list[LogRecord], int]:
    """The records that fit ``budget`` bytes, and what is left of it (the first
    record of an answer always goes, so every poll makes progress)."""
    for i, record in enumerate(records):
        size = len(record.text)
        if size > budget and not (first and i == 0):
            return records[:i], budget
        budget -= size
    return records, budget


async def _poll_body(
    messages: list[str], items: list[str | SnapshotStream], cursor: str
) -> AsyncIterator[str]:
    """A poll answer with snapshots in it, written a part at a time: the next part
    is made once the previous one was handed to the socket (its flow control)."""
    pending = '{"messages":[' + ",".join(messages)
    for item in items:
        if type(item) is SnapshotStream:
            while not item.done:
                yield pending + "," + item.next_part()
                pending = ""
        else:
            pending += "," + item  # type: ignore[operator]
    yield pending + '],"cursor":"' + cursor + '"}'


async def _long_poll(
    runtime: ServerRuntime,
    who: Identity,
    logs: dict[str, TopicLog],
    positions: dict[str, str],
    messages: list[str],
    wait: float,
) -> None:
    """Wait up to ``wait`` s for live events after ``positions``; add them to ``messages``."""
    hub = runtime.hub
    session = Session("poll", POLL_MAX_EVENTS, runtime.chaos, runtime.config.send_queue_bytes)
    session.identity = who
    hub.attach(session)
    for topic_log in logs.values():  # registered right after reading: no gap
        hub.watch(session, topic_log)
    try:
        await asyncio.wait_for(session.wait(), wait)
    except TimeoutError:
        pass
    finally:
        hub.detach(session)
    for item in session.queue:
        if type(item) is LogRecord:
            messages.append(item.text)
            positions[item.topic] = item.token
