"""The SSE transport hands a chunk of event frames to the session at once
(``on_frames``) and any other chunk one frame at a time, as before; without
``on_frames`` every frame goes to ``on_frame``. Either way the session gets the same
frames, in order, with the chunk's receive time."""

from __future__ import annotations

from typing import Any

from rtnb.protocol.sse import SSEParser
from rtnb.transports.base import TransportOptions
from rtnb.transports.sse import SSETransport

STREAM = (
    b'id: a\ndata: {"op":"event","n":1}\n\n'
    b'data: {"op":"event","n":2}\n\n'
    b'event: error\ndata: {"op":"error","code":"slow_consumer","message":"too slow"}\n\n'
    b'event: heartbeat\ndata: {"op":"heartbeat"}\n\n'
    b'data: {"op":"event","n":3}\n\n'
)


def deliver(chunks: list[bytes], at_once: bool) -> tuple[list[Any], list[int], str]:
    got: list[Any] = []
    calls: list[int] = []

    def on_frame(data: Any, now: float) -> None:
        got.append(data)
        calls.append(1)

    def on_frames(frames: list[Any], now: float) -> None:
        got.extend(frames)
        calls.append(len(frames))

    transport = SSETransport(
        "http://x.invalid:1",
        on_frame,
        lambda *a: None,
        TransportOptions(),
        (),
        lambda topic: None,
        on_frames=on_frames if at_once else None,
    )
    parser = SSEParser()
    for chunk in chunks:
        transport._dispatch(parser.feed_tuples(chunk))
    return got, calls, transport._ended_because


def test_a_chunk_of_event_frames_goes_at_once_and_a_mixed_chunk_one_by_one() -> None:
    first, rest = STREAM[:70], STREAM[70:]
    frames, calls, ended = deliver([first, rest], at_once=True)
    assert frames == deliver([first, rest], at_once=False)[0] == deliver([STREAM], True)[0]
    assert len(frames) == 5
    assert calls == [2, 1, 1, 1]  # the first chunk at once; the mixed one frame by frame
    assert ended == "too slow"  # the error event is still read for the stream's end
    assert deliver([first, rest], at_once=False)[1] == [1] * 5


def test_every_http_client_shares_one_verifying_tls_context() -> None:
    # httpx built (and loaded the CA bundle for) a new TLS context per AsyncClient:
    # ~20-50 ms of CPU at every SSE/polling reconnect, even for http:// URLs.
    import ssl

    clients = []
    for _ in range(2):
        t = SSETransport("http://x.invalid:1", lambda *a: None, lambda *a: None,
                         TransportOptions(), (), lambda topic: None)  # fmt: skip
        clients.append(t._client_or_new())
    contexts = [c._transport._pool._ssl_context for c in clients]
    assert contexts[0] is contexts[1]
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
