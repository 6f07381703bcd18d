"""The one URL normaliser (rtnb.connect and every transport)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rtnb.protocol.urls import http_base_url, ws_url

hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
prefixes = st.from_regex(r"(/[a-z0-9_-]{1,8}){0,2}", fullmatch=True).filter(
    lambda p: not p.endswith("/ws")
)
secure = st.booleans()


@given(hosts, prefixes, secure, st.sampled_from(["", "/", "//"]), st.sampled_from(["", " ", "\n"]))
@example("ws", "", False, "", "")  # a host named "ws": ws://ws once gave "http:"
@example("ws:80", "", True, "/", "")
def test_every_spelling_of_a_server_gives_one_base_url(
    host: str, prefix: str, tls: bool, slash: str, space: str
) -> None:
    base = f"http{'s' * tls}://{host}{prefix}"
    spellings = [
        base,
        base + slash,
        f"{space}{base}{slash}{space}",
        f"ws{'s' * tls}://{host}{prefix}/ws",
        f"ws{'s' * tls}://{host}{prefix}/ws/",
        f"ws{'s' * tls}://{host}{prefix}",
    ]
    assert {http_base_url(s) for s in spellings} == {base}


@given(hosts, prefixes, secure)
def test_ws_url_and_base_url_round_trip_and_are_idempotent(
    host: str, prefix: str, tls: bool
) -> None:
    base = f"http{'s' * tls}://{host}{prefix}"
    ws = ws_url(base)
    assert ws == f"ws{'s' * tls}://{host}{prefix}/ws"
    assert ws_url(ws) == ws
    assert http_base_url(ws) == base
    assert http_base_url(http_base_url(base)) == base


@pytest.mark.parametrize("url", ["ftp://h", "localhost:8765", "", "http://", "h/ws"])
def test_other_urls_are_refused_with_what_was_expected(url: str) -> None:
    with pytest.raises(ValueError, match=r"expected an http\(s\):// or ws\(s\):// URL"):
        http_base_url(url)


def test_connect_and_the_transports_share_it() -> None:
    from rtnb.transports import http, websocket

    assert websocket.ws_url is ws_url
    assert http.base_http_url("wss://h:1/ws") == http_base_url("wss://h:1/ws") == "https://h:1"


@pytest.mark.parametrize(
    "url",
    [
        "ws://h:1/ws?token=SECRET-abc",
        "http://h:1?access%5Ftoken=SECRET-abc",
        "https://h/prefix?Last-Event-ID=SECRET-abc",
    ],
)
def test_a_url_carrying_a_token_is_refused_saying_where_the_token_goes(url: str) -> None:
    with pytest.raises(ValueError, match=r"rtnb\.connect\(url, token=\.\.\.\)") as refused:
        http_base_url(url)
    assert "SECRET" not in str(refused.value)


@pytest.mark.parametrize(
    "url", ["http://h:1/?topic=a", "ws://h:1/ws#hushfrag", "http://u:pw@h:1?x=1"]
)
def test_a_url_with_any_query_or_fragment_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match="takes no query string or fragment") as refused:
        http_base_url(url)
    assert "topic=a" not in str(refused.value) and "hushfrag" not in str(refused.value)
    assert "pw" not in str(refused.value)
