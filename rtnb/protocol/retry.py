"""The one parser of server retry hints: ``Retry-After`` headers and 4429 close reasons.

Every transport and the connection state machine read hints through these two
functions, so a hint means the same wherever it arrives:

* :func:`parse_retry_after` — an HTTP ``Retry-After`` value (RFC 9110 §10.2.3):
  ``delay-seconds`` (``"120"``; rtnb also accepts a decimal, ``"2.5"``) or an
  ``HTTP-date`` (``"Wed, 21 Oct 2026 07:28:00 GMT"``, and the two obsolete
  forms RFC 9110 §5.6.7 says recipients must accept), which becomes the
  seconds from ``now`` until then (0 if it has passed).
* :func:`retry_hint_in_reason` — the reference server's WebSocket close
  reason, ``"rate limited; retry_after=2.5"`` (close reasons have no header).

Anything else — negative, not finite, more than nine digits, a malformed
date — is no hint (None): a peer cannot park a client with garbage. Callers
clamp large hints with ``Backoff.max_retry_hint``.
"""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

_SECONDS: Final = re.compile(r"\d{1,9}(?:\.\d{1,9})?")
_IN_REASON: Final = re.compile(r"(?:^|[\s;,])retry_after=(\d{1,9}(?:\.\d{1,9})?)(?=$|[\s;,])")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or None if it is not one.

    Args:
        value: the header's value (None or "" when absent).
        now: the current unix time in seconds, for an ``HTTP-date``.
    """
    if not value:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    if not text[:1].isalpha():  # every HTTP-date starts with a day name
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" forms: HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, ValueError):
        return None


def retry_hint_in_reason(reason: str | None) -> float | None:
    """The ``retry_after=<seconds>`` hint in a close reason, or None."""
    if not reason:
        return None
    match = _IN_REASON.search(reason)
    return float(match.group(1)) if match else None
