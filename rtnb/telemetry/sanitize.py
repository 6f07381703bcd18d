"""Strip tokens and replay cursors from raw frames before they are recorded.

Recordings keep the client-bound frames so that a replay can feed them through
the pipeline again, but replay tokens, snapshot tokens, the latest tokens of
``subscribed`` and ``heartbeat`` frames and polling cursors are secrets
(DESIGN.md §3: they never go in URLs or logs). :func:`sanitize` replaces every
one of them with a synthetic token *of the same length*, so that

* the frame stays valid (``Opaque`` needs a non-empty string), and
* ``len(frame)`` is unchanged, which keeps the ``bytes`` column of a replay
  equal to the live one.

Where tokens live is read from the decoded frame, not guessed from the text:
the keys :data:`TOKEN_KEYS` of the frame (and of every message of a batch, and
of anything else outside ``payload`` / ``state`` user data), and the values of
a heartbeat's ``topics``. Each token found is then replaced wherever it occurs
in the raw text. If a frame is not JSON at all (it will be logged ``invalid``),
a pattern over the text redacts anything that looks like a token field.
A sanitised frame is checked to contain none of the tokens found; if one
survived (an escaped spelling), the frame is re-encoded from the decoded
structure instead.

With ``payloads=False`` the frame is re-encoded with every event payload and
snapshot entity state emptied: the recording still replays outcomes and
timing, not entity contents.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

#: Frame keys whose string values are tokens or cursors.
TOKEN_KEYS: Final = frozenset(
    {"replayToken", "token", "latestToken", "cursor", "replayFrom", "lastEventId"}
)
#: Keys holding user data, left alone when looking for tokens.
USER_DATA_KEYS: Final = frozenset({"payload", "state", "patch"})
#: What a synthetic token spells (repeated and cut to the original's length).
REDACTED: Final = b"rtnb-redacted-"

_encode = msgspec.json.encode
_decode = msgspec.json.decode
# A token-like field in text that is not JSON: "key": "value" (value may be cut short).
_TEXT_FIELD = re.compile(
    rb'("(?:replayToken|token|latestToken|cursor|replayFrom|lastEventId)"\s*:\s*")'
    rb'((?:[^"\\]|\\.)*)'
)


def filler(n: int) -> bytes:
    """A synthetic token of ``n`` bytes."""
    return (REDACTED * (n // len(REDACTED) + 1))[:n]


def _collect(node: Any, out: set[str], heartbeat: bool = False) -> None:
    """Add every token found in ``node`` (decoded JSON) to ``out``."""
    if isinstance(node, dict):
        is_heartbeat = node.get("op") == "heartbeat"
        for key, value in node.items():
            if key in USER_DATA_KEYS:
                continue
            if key in TOKEN_KEYS and isinstance(value, str):
                out.add(value)
            elif key == "topics" and is_heartbeat and isinstance(value, dict):
                out.update(v for v in value.values() if isinstance(v, str))
            else:
                _collect(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect(item, out)


def _redact_structure(node: Any, tokens: set[str], payloads: bool) -> Any:
    """A copy of ``node`` with tokens replaced (and payloads emptied unless kept)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in USER_DATA_KEYS and not payloads:
                out[key] = {}
            elif isinstance(value, str) and value in tokens:
                out[key] = filler(len(value.encode())).decode()
            else:
                out[key] = _redact_structure(value, tokens, payloads)
        return out
    if isinstance(node, list):
        return [_redact_structure(v, tokens, payloads) for v in node]
    if isinstance(node, str) and node in tokens:
        return filler(len(node.encode())).decode()
    return node


def _redact_text(raw: bytes) -> bytes:
    return _TEXT_FIELD.sub(lambda m: m.group(1) + filler(len(m.group(2))), raw)


def sanitize(data: bytes | str, *, payloads: bool = True) -> bytes:
    """``data`` (one raw frame) as UTF-8 bytes with every token replaced.

    The result has the same length as ``data`` encoded, unless ``payloads``
    is False or a token had to be re-encoded.
    """
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    try:
        decoded = _decode(raw)
    except msgspec.DecodeError:
        return _redact_text(raw)
    tokens: set[str] = set()
    _collect(decoded, tokens)
    tokens.discard("")
    if not payloads:
        return _encode(_redact_structure(decoded, tokens, payloads=False))
    if not tokens:
        return raw
    out = raw
    for token in tokens:
        quoted = _encode(token)
        if quoted not in out:  # spelled with escapes: re-encode from the structure
            return _encode(_redact_structure(decoded, tokens, payloads=True))
        out = out.replace(quoted, b'"' + filler(len(quoted) - 2) + b'"')
    if contains_token(out, tokens):
        return _encode(_redact_structure(decoded, tokens, payloads=True))
    return out


def contains_token(data: bytes, tokens: set[str]) -> bool:
    """True if any of ``tokens`` occurs in ``data`` (for tests and assertions)."""
    return any(t and t.encode() in data for t in tokens)
