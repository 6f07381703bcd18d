"""Bounded duplicate detection by event ``id``.

The essay's sketch keeps a map of ids and, to evict one, sorts the whole map
by time: O(n log n) per event, ~80 µs at 1,000 entries. Here a dict answers
"seen?" and a FIFO deque of the same ids, in insertion order, tells what to
evict, so every operation is O(1) amortised:

* ``seen(id)`` is one dict lookup;
* ``add(id, now)`` appends to both, then evicts from the front of the FIFO
  when the memory is over ``max_entries`` (a sixteenth at a time, so the
  eviction loop is amortised) or its oldest entry is older than ``max_age``.

One ``Deduper`` lives as long as its connection (it is not reset on
reconnect), so an event replayed after a reconnect is still recognised.
Ids are recorded when an event is *applied*, not when it arrives: an event
that is buffered and then thrown away (a gap that is re-requested) must be
accepted when the replay delivers it again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any, Final

#: Ids remembered at most (per connection): 50,000.
DEFAULT_DEDUPE_MAX_ENTRIES: Final = 50_000
#: Seconds an id is remembered at most: 600.
DEFAULT_DEDUPE_MAX_AGE: Final = 600.0


class Deduper:
    """Remembers recently applied event ids, bounded by count and by age."""

    __slots__ = ("_chunk", "_seen", "evicted", "expires", "fifo", "max_age", "max_entries")

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_DEDUPE_MAX_ENTRIES,
        max_age: float = DEFAULT_DEDUPE_MAX_AGE,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if not max_age > 0:
            raise ValueError(f"max_age must be > 0 seconds, got {max_age}")
        self.max_entries = max_entries
        self.max_age = max_age
        self._seen: dict[str, float] = {}
        self.fifo: deque[str] = deque()
        #: when the oldest remembered id passes ``max_age`` (-inf: recompute at next add)
        self.expires = -math.inf
        #: extra entries evicted with each overflow (never the one just added)
        self._chunk = max_entries // 16
        self.evicted = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Deduper:
        """A copy for a replay checkpoint: ids and times are immutable, so the containers
        are copied at C speed (not element by element)."""
        new = Deduper.__new__(Deduper)
        new.max_entries, new.max_age, new.evicted = self.max_entries, self.max_age, self.evicted
        new._seen, new.fifo = self._seen.copy(), self.fifo.copy()
        new.expires, new._chunk = self.expires, self._chunk
        memo[id(self)] = new
        memo[id(self._seen)] = new._seen
        return new

    @classmethod
    def restored(
        cls,
        ids: Sequence[str],
        times: Sequence[float],
        *,
        max_entries: int = DEFAULT_DEDUPE_MAX_ENTRIES,
        max_age: float = DEFAULT_DEDUPE_MAX_AGE,
        evicted: int = 0,
    ) -> Deduper:
        """A memory holding ``ids`` (distinct, oldest first) applied at ``times``, as
        :meth:`newest` gave them: a replay rebuilds a checkpoint's memory from those."""
        new = cls(max_entries=max_entries, max_age=max_age)
        if len(ids) != len(times):
            raise ValueError(f"{len(ids)} ids but {len(times)} times")
        new._seen = dict(zip(ids, times, strict=True))
        if len(new._seen) != len(ids):
            raise ValueError("ids must be distinct")
        if len(ids) > max_entries:
            raise ValueError(f"{len(ids):,} ids over max_entries={max_entries:,}")
        new.fifo = deque(new._seen)
        new.evicted = evicted
        return new

    def newest(self, n: int) -> tuple[list[str], list[float]]:
        """The ``n`` most recently added ids still remembered (fewer if it holds fewer),
        oldest first, and the times they were added."""
        ids = list(islice(reversed(self.fifo), max(0, n)))
        ids.reverse()
        seen = self._seen
        return ids, [seen[i] for i in ids]

    @property
    def added(self) -> int:
        """Ids added over the memory's life, while nothing was forgotten or cleared
        (the ones held plus the ones evicted)."""
        return len(self._seen) + self.evicted

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def seen(self, event_id: str) -> bool:
        return event_id in self._seen

    def add(self, event_id: str, now: float) -> None:
        """Remember ``event_id`` as applied at ``now``; evict what is over the bounds.

        The hot path is a dict store, a deque append and two comparisons: the
        age check looks at one float (when the oldest entry expires), and when
        the count bound is passed a sixteenth of the memory is evicted at once,
        so the eviction loop runs once per ``max_entries / 16`` adds.
        """
        seen = self._seen
        if event_id in seen:
            return
        seen[event_id] = now
        fifo = self.fifo
        fifo.append(event_id)
        if now >= self.expires or len(fifo) > self.max_entries:
            self.evict(now)

    def add_new(self, event_ids: dict[str, float], now: float) -> None:
        """Remember ids none of which is remembered yet (distinct: dict keys), all
        applied at ``now``: the same memory as :meth:`add` of each in order, in bulk
        unless an eviction falls inside the run (then one by one)."""
        fifo = self.fifo
        if now >= self.expires or len(fifo) + len(event_ids) > self.max_entries:
            add = self.add
            for eid in event_ids:
                add(eid, now)
            return
        self._seen.update(event_ids)
        fifo.extend(event_ids)

    def evict(self, now: float) -> None:
        seen, fifo = self._seen, self.fifo
        if len(fifo) > self.max_entries:
            n = len(fifo) - self.max_entries + self._chunk
            for _ in range(n):
                del seen[fifo.popleft()]
            self.evicted += n
        max_age = self.max_age
        while fifo and now - seen[fifo[0]] >= max_age:
            del seen[fifo.popleft()]
            self.evicted += 1
        # -inf while empty: the next add sets the expiry of the new oldest entry.
        self.expires = seen[fifo[0]] + max_age if fifo else -math.inf

    def forget(self, event_id: str) -> None:
        """Drop one id (rare: O(n) in the FIFO, used only outside the hot path)."""
        if self._seen.pop(event_id, None) is not None:
            self.fifo.remove(event_id)
            self.expires = -math.inf

    def clear(self) -> None:
        self._seen.clear()
        self.fifo.clear()
        self.expires = -math.inf
