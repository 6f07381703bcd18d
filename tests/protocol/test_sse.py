"""SSEParser against WHATWG HTML §9.2.6 "Interpreting an event stream".

Cases come from the spec's own examples, from web-platform-tests
(``eventsource/format-*.any.js``; WPT's ``message.py`` appends one LF to every
message body, reproduced here), and from the rules one by one. Properties
check that chunking never matters, that encoded events round-trip, and that
the parser agrees with a literal, character-by-character reading of the spec.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.protocol.errors import LocalProtocolError, RemoteProtocolError
from rtnb.protocol.sse import (
    DEFAULT_MAX_LINE_LENGTH,
    SSEEvent,
    SSEEventTooLarge,
    SSELineTooLong,
    SSEParser,
)


def msg(data: str, last_event_id: str = "", type: str = "message") -> SSEEvent:
    return SSEEvent(type=type, data=data, last_event_id=last_event_id)


def parse(*chunks: bytes, last_event_id: str = "") -> tuple[list[SSEEvent], SSEParser]:
    """Feed chunks then EOF; return every event and the parser for inspection."""
    parser = SSEParser(last_event_id=last_event_id)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.feed_eof()
    return events, parser


def datas(*chunks: bytes) -> list[str]:
    return [event.data for event in parse(*chunks)[0]]


# --- the spec's examples ---------------------------------------------------------


def test_spec_stock_example_with_comment_ids_and_leading_space() -> None:
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\n"
        b"data:second event\nid\n\ndata:  third event\n\n"
    )
    events, parser = parse(stream)
    assert events == [msg("first event", "1"), msg("second event", ""), msg(" third event", "")]
    assert parser.last_event_id == ""


def test_spec_stock_example_last_event_needs_a_blank_line_not_just_eof() -> None:
    stream = b"data: first event\nid: 1\n\ndata:  third event\n"
    assert datas(stream) == ["first event"]


def test_spec_multiline_data_is_joined_with_line_feeds() -> None:
    assert datas(b"data: YHOO\ndata: +2\ndata: 10\n\n") == ["YHOO\n+2\n10"]


def test_spec_empty_data_fields_give_empty_and_newline_and_unterminated_is_dropped() -> None:
    assert datas(b"data\n\ndata\ndata\n\ndata:") == ["", "\n"]


def test_spec_space_after_colon_is_optional() -> None:
    assert datas(b"data:test\n\ndata: test\n\n") == ["test", "test"]


def test_spec_event_types_name_the_dispatched_events() -> None:
    stream = (
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    )
    events, _ = parse(stream)
    assert events == [
        msg("73857293", type="add"),
        msg("2153", type="remove"),
        msg("113411", type="add"),
    ]


# --- web-platform-tests eventsource/format-* -------------------------------------


def test_wpt_field_parsing_mixes_nul_cr_case_and_bogus_names() -> None:
    stream = (
        b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\n"
        b"data:3\rdata:\r\n data:32\ndata:4\n\n"
    )
    assert datas(stream) == ["\0\n 2\n1\n3\n\n4"]


def test_wpt_comment_fest_with_long_comments_and_mixed_line_ends() -> None:
    long = b"x" * 2048
    stream = b"data:1\r:\0\n:\r\ndata:2\n:" + long + b"\rdata:3\n:data:fail\r:" + long
    assert datas(stream + b"\ndata:4\n\n") == ["1\n2\n3\n4"]


def test_wpt_newline_fest_crlf_then_cr_then_lf() -> None:
    assert datas(b"data:test\r\ndata\ndata:test\r\n\r\n") == ["test\n\ntest"]


def test_wpt_unknown_fields_and_lines_without_colon_are_ignored() -> None:
    stream = (
        b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n\n"
    )
    assert datas(stream) == ["test\n\ntest"]


def test_wpt_only_one_space_is_removed_and_tab_is_kept() -> None:
    assert datas(b"data:\ttest\rdata: \ndata:test\n\n\n") == ["\ttest\n\ntest"]


def test_wpt_event_data_stream() -> None:
    stream = b"data:msg\ndata: msg\n\n:\nfalsefield:msg\n\nfalsefield:msg\nData:data\n\ndata\n\ndata:end\n\n"
    assert datas(stream) == ["msg\nmsg", "", "end"]


def test_wpt_data_before_final_empty_line_is_dropped_with_its_id() -> None:
    events, parser = parse(b"retry:1000\ndata:test1\n\nid:test\ndata:test2\n")
    assert events == [msg("test1")]
    assert parser.last_event_id == ""
    assert parser.retry == 1000


def test_wpt_last_event_id_survives_reconnect_when_seeded() -> None:
    first, parser = parse("id: …\nretry: 200\ndata: hello\n\n".encode())
    assert first == [msg("hello", "…")]
    again, _ = parse("data: …\n\n".encode(), last_event_id=parser.last_event_id)
    assert again == [msg("…", "…")]


def test_wpt_utf8_is_always_used() -> None:
    assert datas(b"data:ok\xe2\x80\xa6\n\n") == ["ok…"]


def test_wpt_nul_in_data_is_kept() -> None:
    assert datas(b"data:\x00\n\n") == ["\x00"]


# --- byte order mark -------------------------------------------------------------


def test_one_leading_bom_is_stripped() -> None:
    assert datas(b"\xef\xbb\xbfdata: hello\n\n") == ["hello"]


def test_second_bom_is_part_of_the_field_name_so_that_line_is_ignored() -> None:
    stream = b"\xef\xbb\xbf\xef\xbb\xbfdata:1\n\ndata:2\n\ndata:3\n\n"
    assert datas(stream) == ["2", "3"]


def test_bom_split_across_chunks_is_stripped_once() -> None:
    assert datas(b"\xef", b"\xbb\xbf", b"data: x\n\n") == ["x"]
    assert datas(b"\xef\xbb", b"\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n") == ["y"]


def test_bom_after_the_start_of_the_stream_is_data() -> None:
    assert datas(b"data: a\xef\xbb\xbfb\n\n") == ["a\ufeffb"]
    assert datas(b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\ndata: c\n\n") == ["a", "c"]


# --- line ends -------------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_lf_cr_and_crlf_all_end_lines(end: bytes) -> None:
    stream = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
    assert datas(stream) == ["a\nb", "c"]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert datas(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == ["a\nb"]


def test_cr_at_end_of_chunk_followed_by_other_text_is_a_line_end() -> None:
    assert datas(b"data: a\r", b"data: b\r", b"\r") == ["a\nb"]


def test_cr_at_end_of_chunk_followed_by_cr_is_a_blank_line() -> None:
    events, _ = parse(b"data: a\r", b"\rdata: b\r\r")
    assert events == [msg("a"), msg("b")]


def test_cr_ends_an_event_without_waiting_for_the_next_chunk() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == [msg("a")]
    assert parser.feed(b"\n") == []  # completes the CRLF: no further blank line
    assert parser.feed(b"data: b\n\n") == [msg("b")]


def test_unicode_line_separators_are_not_line_ends() -> None:
    assert datas("data: a\u2028b\u0085c\x0b\x0c\x1c\n\n".encode()) == [
        "a\u2028b\u0085c\x0b\x0c\x1c"
    ]


# --- fields ----------------------------------------------------------------------


def test_only_the_first_colon_splits_name_from_value() -> None:
    assert datas(b"data: a: b:c\n\n") == ["a: b:c"]


def test_field_names_are_case_sensitive() -> None:
    events, parser = parse(b"Data: x\nEVENT: t\nID: 1\nRetry: 5\ndata: y\n\n")
    assert events == [msg("y")]
    assert (parser.last_event_id, parser.retry) == ("", None)


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    events, parser = parse(b"id: 7\ndata\nid\n\n")
    assert events == [msg("", "")]
    assert parser.last_event_id == ""


def test_comment_lines_are_ignored() -> None:
    assert datas(b": hello\n:data: no\ndata: yes\n:\n\n") == ["yes"]


def test_empty_event_field_means_message() -> None:
    events, _ = parse(b"event: \ndata:data\n\n\n")
    assert events == [msg("data")]


def test_event_type_is_reset_after_dispatch() -> None:
    events, _ = parse(b"event: a\ndata: 1\n\ndata: 2\n\n")
    assert events == [msg("1", type="a"), msg("2")]


def test_event_with_empty_data_buffer_is_not_dispatched_and_its_type_is_forgotten() -> None:
    events, _ = parse(b"event: ping\n\ndata: x\n\n")
    assert events == [msg("x")]


# --- id --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\0\0", "x\0", "\0x", "x\0x", " \0"])
def test_id_containing_nul_is_ignored_entirely(value: str) -> None:
    events, parser = parse(f"id: 1\n\nid: {value}\ndata: hello\n\n".encode())
    assert events == [msg("hello", "1")]
    assert parser.last_event_id == "1"


def test_empty_id_resets_last_event_id() -> None:
    for line in (b"id:", b"id: ", b"id"):
        events, parser = parse(b"id: 1\ndata: 1\n\n" + line + b"\ndata: 2\n\ndata: 3\n\n")
        assert events == [msg("1", "1"), msg("2", ""), msg("3", "")]
        assert parser.last_event_id == ""


def test_last_event_id_persists_across_events() -> None:
    stream = b"id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata: 3\n\ndata: 4\n\n"
    events, _ = parse(stream)
    assert events == [msg("1", "1"), msg("2", "1"), msg("3", "2"), msg("4", "2")]


def test_last_event_id_is_seeded_from_the_constructor() -> None:
    events, parser = parse(b"data: a\n\n", last_event_id="41")
    assert events == [msg("a", "41")]
    assert parser.last_event_id == "41"
    assert SSEParser(last_event_id="41").last_event_id == "41"


def test_id_without_data_updates_last_event_id_without_dispatching() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 5\n") == []
    assert parser.last_event_id == ""  # not committed before the blank line
    assert parser.feed(b"\n") == []
    assert parser.last_event_id == "5"


def test_id_of_incomplete_event_at_eof_is_not_committed() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid: 2\ndata: b\n", last_event_id="0")
    assert events == [msg("a", "1")]
    assert parser.last_event_id == "1"


def test_id_applies_to_its_own_event_wherever_it_appears_in_the_block() -> None:
    events, _ = parse(b"data: a\nid: 9\n\n")
    assert events == [msg("a", "9")]


# --- retry -----------------------------------------------------------------------


def test_retry_with_ascii_digits_sets_reconnection_time() -> None:
    assert parse(b"retry: 3000\n\n")[1].retry == 3000
    assert parse(b"retry:0042\n")[1].retry == 42  # applied when the line is read


@pytest.mark.parametrize("value", ["", "  1000", "1000x", "10.5", "-1", "+1", "1e3", "²", "١٢"])
def test_retry_that_is_not_only_ascii_digits_is_ignored(value: str) -> None:
    _, parser = parse(f"retry: 3000\nretry:{value}\n\n".encode())
    assert parser.retry == 3000


def test_retry_is_none_until_set() -> None:
    assert SSEParser().retry is None


def test_retry_too_long_for_int_is_ignored() -> None:
    _, parser = parse(b"retry: 5\nretry: " + b"9" * 5000 + b"\n")
    assert parser.retry == 5


# --- end of stream ---------------------------------------------------------------


def test_incomplete_event_at_eof_is_discarded() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [msg("a")]
    assert parser.feed_eof() == []


def test_final_line_without_line_end_is_discarded() -> None:
    assert datas(b"data: a\n\ndata: b\n\n\ndata: c") == ["a", "b"]
    assert parse(b"retry: 5")[1].retry is None


def test_feed_after_eof_is_a_local_error_and_eof_twice_is_harmless() -> None:
    parser = SSEParser()
    parser.feed_eof()
    assert parser.feed_eof() == []
    with pytest.raises(LocalProtocolError, match="new SSEParser"):
        parser.feed(b"data: x\n\n")


# --- decoding --------------------------------------------------------------------


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert datas(b"data: a\xffb\xc3(\xed\xa0\x80\n\n") == ["a\ufffdb\ufffd(\ufffd\ufffd\ufffd"]


def test_multibyte_character_split_across_chunks_is_decoded() -> None:
    assert datas(b"data: \xe2", b"\x80", b"\xa6\n\n") == ["…"]


def test_truncated_character_before_line_end_becomes_one_replacement_character() -> None:
    assert datas(b"data: \xf0\x9f\x98", b"\n\n") == ["\ufffd"]


def test_bytearray_and_memoryview_are_accepted() -> None:
    parser = SSEParser()
    assert parser.feed(bytearray(b"data: a\n")) == []
    assert parser.feed(memoryview(b"xx\n\n")[2:]) == [msg("a")]


# --- line length limit -----------------------------------------------------------


def test_default_max_line_length_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_LINE_LENGTH == 1024 * 1024


def test_line_at_the_limit_is_accepted() -> None:
    parser = SSEParser(max_line_length=10)
    assert parser.feed(b"data:" + b"x" * 5 + b"\n\n") == [msg("xxxxx")]


def test_line_over_the_limit_in_one_chunk_raises_a_remote_error() -> None:
    parser = SSEParser(max_line_length=10)
    with pytest.raises(SSELineTooLong, match="max_line_length=10") as info:
        parser.feed(b"data: 1\n\ndata:" + b"x" * 6 + b"\n\n")
    assert isinstance(info.value, RemoteProtocolError)
    assert parser.last_event_id == ""  # nothing of the failed chunk was applied


def test_line_growing_over_the_limit_across_chunks_raises_before_buffering_it() -> None:
    parser = SSEParser(max_line_length=10)
    assert parser.feed(b"data:12345") == []  # 10 characters: at the limit
    with pytest.raises(SSELineTooLong):
        parser.feed(b"6")
    with pytest.raises(LocalProtocolError):
        parser.feed(b"\n\n")


def test_events_before_an_overlong_line_in_an_earlier_chunk_are_kept() -> None:
    parser = SSEParser(max_line_length=10)
    assert parser.feed(b"id: 1\ndata: a\n\ndata:") == [msg("a", "1")]
    with pytest.raises(SSELineTooLong):
        parser.feed(b"x" * 20)
    assert parser.last_event_id == "1"


def test_data_lines_without_a_blank_line_stop_at_the_data_limit() -> None:
    parser = SSEParser(max_data_length=20)
    assert parser.feed(b"data: 12345678\n" * 2) == []  # 2 x (8 + LF) = 18: within
    with pytest.raises(SSEEventTooLarge, match="max_data_length=20") as info:
        parser.feed(b"data: 12\n")  # 21
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.events == []
    with pytest.raises(LocalProtocolError):
        parser.feed(b"\n")


def test_events_completed_before_the_data_overflow_are_handed_over() -> None:
    parser = SSEParser(max_data_length=10)
    with pytest.raises(SSEEventTooLarge) as info:
        parser.feed(b"id: 7\ndata: a\n\n" + b"data: 12345\n" * 3)
    assert info.value.events == [msg("a", "7")]
    assert parser.last_event_id == "7"


@given(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=300))
def test_the_data_buffer_never_holds_more_than_its_limit(limit: int, lines: int) -> None:
    parser = SSEParser(max_data_length=limit)
    fed = 0
    try:
        for _ in range(lines):
            fed += 1
            parser.feed(b"data: xy\n")  # 3 characters with its LF
            assert parser._data_len <= limit
    except SSEEventTooLarge as exc:
        assert exc.length == 3 * fed > limit >= 3 * (fed - 1)
    else:
        assert 3 * lines <= limit


def test_max_line_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line_length"):
        SSEParser(max_line_length=0)
    with pytest.raises(ValueError, match="max_data_length"):
        SSEParser(max_data_length=0)


# --- properties ------------------------------------------------------------------

_PIECES = [
    b"data", b"id", b"event", b"retry", b"Data", b":", b" ", b"\r", b"\n", b"\r\n",
    b"\xef\xbb\xbf", b"\x00", b"x", b"7", b"\xe2\x80\xa6", b"\xe2", b"\xff", b"\xf0\x9f",
]  # fmt: skip

streams = st.lists(st.sampled_from(_PIECES) | st.binary(max_size=4), max_size=60).map(b"".join)


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(stream)) for cut in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


def _outcome(*chunks: bytes) -> tuple[list[SSEEvent], str, int | None]:
    events, parser = parse(*chunks, last_event_id="seed")
    return events, parser.last_event_id, parser.retry


@given(streams, st.lists(st.integers(min_value=0, max_value=300), max_size=20))
def test_chunking_never_changes_events_retry_or_last_event_id(
    stream: bytes, cuts: list[int]
) -> None:
    assert _outcome(*_split(stream, cuts)) == _outcome(stream)


@given(streams)
def test_byte_at_a_time_equals_one_piece(stream: bytes) -> None:
    assert _outcome(*(stream[i : i + 1] for i in range(len(stream)))) == _outcome(stream)


def _reference(stream: bytes, seed: str) -> tuple[list[SSEEvent], str, int | None]:
    """The spec read literally: whole-stream decode, one character at a time."""
    text = stream.decode("utf-8", "replace")
    text = text[1:] if text.startswith("\ufeff") else text
    lines, line, i = [], "", 0
    while i < len(text):
        char = text[i]
        if char in "\r\n":
            lines.append(line)
            line = ""
            i += 2 if text[i : i + 2] == "\r\n" else 1
        else:
            line += char
            i += 1
    events, data, kind, id_buffer, last_id, retry = [], "", "", seed, seed, None
    for line in lines:  # the unterminated `line` left over is discarded at EOF
        if line == "":
            last_id = id_buffer
            if data:
                events.append(SSEEvent(kind or "message", data.removesuffix("\n"), last_id))
            data, kind = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        value = value.removeprefix(" ") if colon else ""
        if name == "data":
            data += value + "\n"
        elif name == "event":
            kind = value
        elif name == "id" and "\0" not in value:
            id_buffer = value
        elif name == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return events, last_id, retry


@given(streams)
def test_parser_agrees_with_a_literal_reading_of_the_spec(stream: bytes) -> None:
    assert _outcome(stream) == _reference(stream, "seed")


@pytest.mark.parametrize(
    "field",
    [b"data:x", b"data: x", b"data:  x", b"data:", b"data: ", b"data:\x00", b"datax:y",
     b"id:x", b"id: x", b"id:  x", b"id:", b"id: ", b"id:x\x00", b"idx:y", b"data", b"id"],
)  # fmt: skip
def test_the_common_fields_agree_with_a_literal_reading_of_the_spec(field: bytes) -> None:
    # Issue 22: "data:" and "id:" lines take a fast path; each shape of them, with and
    # without the optional space, must read as the spec's general rule reads it.
    stream = b"id: old\n" + field + b"\ndata: y\n\n" + field + b"\n\n"
    assert _outcome(stream) == _reference(stream, "seed")


_no_line_end = st.text().filter(lambda s: "\r" not in s and "\n" not in s)
_events = st.tuples(
    _no_line_end,  # event type ("" means the default "message")
    st.text().map(lambda s: s.replace("\r", "")),  # data: LF allowed, CR is not encodable
    st.none() | _no_line_end.filter(lambda s: "\0" not in s),  # id, or no id line
)


@pytest.mark.slow
@given(st.lists(_events, max_size=8), st.booleans())
def test_encoded_events_round_trip(spec: list[tuple[str, str, str | None]], crlf: bool) -> None:
    wire, expected, last_id = "\ufeff", [], "seed"
    for kind, data, id_ in spec:
        if kind:
            wire += f"event: {kind}\n"
        if id_ is not None:
            wire += f"id: {id_}\n"
            last_id = id_
        wire += "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
        expected.append(SSEEvent(kind or "message", data, last_id))
    if crlf:
        wire = wire.replace("\n", "\r\n")
    assert _outcome(wire.encode()) == (expected, last_id, None)


@given(streams, st.lists(st.integers(min_value=0, max_value=300), max_size=20), st.integers(1, 64))
def test_feed_tuples_gives_feeds_events_as_tuples_and_the_same_errors(
    stream: bytes, cuts: list[int], limit: int
) -> None:
    # Issue 22: the SSE transport takes (type, data, id) tuples (no SSEEvent built).
    def run(tuples: bool) -> tuple[list[tuple[str, str, str]], str, int | None, str]:
        parser = SSEParser("seed", max_line_length=limit, max_data_length=limit)
        out: list[tuple[str, str, str]] = []
        error = ""
        try:
            for chunk in _split(stream, cuts):
                if tuples:
                    out.extend(parser.feed_tuples(chunk))
                else:
                    out.extend((e.type, e.data, e.last_event_id) for e in parser.feed(chunk))
        except (SSELineTooLong, SSEEventTooLarge) as exc:
            error = str(exc)
            if isinstance(exc, SSEEventTooLarge):
                events = exc.events
                assert all(isinstance(e, tuple if tuples else SSEEvent) for e in events)
                out.extend(e if tuples else (e.type, e.data, e.last_event_id) for e in events)
        return out, parser.last_event_id, parser.retry, error

    assert run(True) == run(False)
