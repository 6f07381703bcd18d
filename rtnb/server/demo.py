"""Demo producers (``rtnb serve --demo``): realistic topics for one or more tenants.

* ``incidents`` — open → ack → resolved lifecycles with severity, service and
  assignee; resolved incidents are archived (``incident.deleted``) so the set
  stays small. Operators can ack/resolve them with mutations (see
  ``mutations.py`` for the rules).
* ``fleet`` — vehicles with position, speed, heading, battery and status.
* ``prices`` — ticks for a handful of symbols; latest wins (subscribe with
  ``ordering="entity"``).

Rates are events per second per tenant and topic, from a few to thousands
(``rates={"prices": 2000}`` or ``scale=10``). Producers publish in ticks of
:data:`TICK` seconds and pick up the state already in the log, so they resume
sensibly after ``chaos.restart(keep_data=True)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from .hub import Hub, StorageFailed

#: Events per second per tenant, by topic.
DEFAULT_RATES: Final = {"incidents": 2.0, "fleet": 20.0, "prices": 50.0}
DEFAULT_TENANTS: Final = ("acme", "globex")
#: Seconds between production ticks.
TICK: Final = 0.05

SERVICES: Final = ("checkout", "payments", "search", "auth", "inventory", "notifications")
SYMPTOMS: Final = (
    "p99 latency above SLO",
    "error rate spike",
    "queue backlog growing",
    "5xx from upstream",
    "certificate expires in 7 days",
    "disk 90% full",
)
SEVERITY_WEIGHTS: Final = {"low": 4, "medium": 3, "high": 2, "critical": 1}
ONCALL: Final = ("ana", "bo", "chen", "dita", "emre", "fay")
SYMBOLS: Final = {
    "AAPL": 228.0,
    "MSFT": 415.0,
    "NVDA": 131.0,
    "AMZN": 186.0,
    "GOOG": 166.0,
    "TSLA": 248.0,
    "BTC-USD": 67_000.0,
    "ETH-USD": 2_600.0,
}
Emit = Callable[[str, str, dict[str, Any]], None]  # (type, entity_id, payload)


def _now() -> str:
    # to the second: people read these in tables ("2026-12-02T07:54:28Z")
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Incidents:
    def __init__(self, rng: random.Random, existing: Mapping[str, Mapping[str, Any]]) -> None:
        self.rng = rng
        self.status = {k: str(v.get("status", "open")) for k, v in existing.items()}
        numbers = [int(k.split("-")[1]) for k in existing if k.split("-")[-1].isdigit()]
        self.next = max(numbers, default=0) + 1

    def step(self, emit: Emit) -> None:
        rng, status = self.rng, self.status
        active = [k for k, s in status.items() if s != "resolved"]
        if len(active) < 4 or (len(active) < 12 and rng.random() < 0.3):
            key = f"inc-{self.next}"
            self.next += 1
            service = rng.choice(SERVICES)
            severity = rng.choices(list(SEVERITY_WEIGHTS), list(SEVERITY_WEIGHTS.values()))[0]
            status[key] = "open"
            emit(
                "incident.opened",
                key,
                {
                    "title": f"{service}: {rng.choice(SYMPTOMS)}",
                    "service": service,
                    "severity": severity,
                    "status": "open",
                    "assignee": None,
                    "openedAt": _now(),
                },
            )
            return
        resolved = [k for k, s in status.items() if s == "resolved"]
        if len(resolved) > 20:
            key = resolved[0]
            del status[key]
            emit("incident.deleted", key, {})
            return
        key = rng.choice(active)
        if status[key] == "open":
            status[key] = "ack"
            emit("incident.acknowledged", key, {"status": "ack", "assignee": rng.choice(ONCALL)})
        else:
            status[key] = "resolved"
            emit("incident.resolved", key, {"status": "resolved", "resolvedAt": _now()})


class _Fleet:
    def __init__(self, rng: random.Random, existing: Mapping[str, Mapping[str, Any]]) -> None:
        self.rng = rng
        self.vehicles: dict[str, dict[str, Any]] = {}
        for i in range(1, 25):
            key = f"veh-{i:02d}"
            self.vehicles[key] = dict(existing.get(key) or self._new(rng))

    @staticmethod
    def _new(rng: random.Random) -> dict[str, Any]:
        return {
            "lat": 52.52 + rng.uniform(-0.08, 0.08),
            "lon": 13.40 + rng.uniform(-0.12, 0.12),
            "speed": 0.0,
            "heading": rng.uniform(0, 360),
            "battery": rng.uniform(40, 100),
            "status": "idle",
        }

    def step(self, emit: Emit) -> None:
        rng = self.rng
        key = rng.choice(list(self.vehicles))
        v = self.vehicles[key]
        status = v["status"]
        if status == "charging":
            v["battery"] = min(100.0, v["battery"] + rng.uniform(1, 4))
            if v["battery"] >= 95:
                v["status"] = "idle"
        elif v["battery"] < 15:
            v["status"], v["speed"] = "charging", 0.0
        elif status == "idle" and rng.random() < 0.3:
            v["status"] = "moving"
        elif status == "moving":
            v["speed"] = max(0.0, min(90.0, v["speed"] + rng.uniform(-8, 10)))
            v["heading"] = (v["heading"] + rng.uniform(-25, 25)) % 360
            dist = v["speed"] / 3600 / 111  # degrees per second at this speed, roughly
            v["lat"] += dist * math.cos(math.radians(v["heading"]))
            v["lon"] += dist * math.sin(math.radians(v["heading"]))
            v["battery"] = max(0.0, v["battery"] - rng.uniform(0.05, 0.3))
            if rng.random() < 0.05:
                v["status"], v["speed"] = "idle", 0.0
        payload = {
            "lat": round(v["lat"], 6),
            "lon": round(v["lon"], 6),
            "speed": round(v["speed"], 1),
            "heading": round(v["heading"], 1),
            "battery": round(v["battery"], 1),
            "status": v["status"],
        }
        emit("vehicle.updated", key, payload)


class _Prices:
    def __init__(self, rng: random.Random, existing: Mapping[str, Mapping[str, Any]]) -> None:
        self.rng = rng
        self.price = {s: float((existing.get(s) or {}).get("price", p)) for s, p in SYMBOLS.items()}

    def step(self, emit: Emit) -> None:
        rng = self.rng
        symbol = rng.choice(list(self.price))
        price = self.price[symbol] * math.exp(rng.gauss(0, 0.0008))
        self.price[symbol] = price
        spread = price * 0.0002
        emit(
            "price.tick",
            symbol,
            {
                "price": round(price, 4),
                "bid": round(price - spread, 4),
                "ask": round(price + spread, 4),
                "size": rng.randint(1, 500),
            },
        )


class _Model(Protocol):
    def step(self, emit: Emit) -> None: ...


_MODELS: Final[dict[str, Callable[[random.Random, Mapping[str, Mapping[str, Any]]], _Model]]] = {
    "incidents": _Incidents,
    "fleet": _Fleet,
    "prices": _Prices,
}


def producers(
    *,
    tenants: Sequence[str] = DEFAULT_TENANTS,
    rates: Mapping[str, float] | None = None,
    scale: float = 1.0,
    seed: int | None = None,
) -> list[Callable[[Hub], Any]]:
    """One producer coroutine function per (tenant, topic); run them on the server loop."""
    chosen = {**DEFAULT_RATES, **(rates or {})}
    unknown = sorted(set(chosen) - set(_MODELS))
    if unknown:
        raise ValueError(f"unknown demo topic(s) {unknown}; expected {sorted(_MODELS)}")
    out: list[Callable[[Hub], Any]] = []
    for t_index, tenant in enumerate(tenants):
        for topic, rate in chosen.items():
            if rate * scale > 0:
                rng_seed = None if seed is None else seed * 1000 + t_index * 10 + len(out)
                out.append(_producer(tenant, topic, rate * scale, rng_seed))
    return out


def _producer(tenant: str, topic: str, rate: float, seed: int | None) -> Callable[[Hub], Any]:
    async def run(hub: Hub) -> None:
        rng = random.Random(seed)
        with contextlib.suppress(StorageFailed):  # Redis: load the topic without blocking
            await hub.prepare_publish(tenant, topic)
        model = _MODELS[topic](rng, hub.log(tenant, topic).entities)
        hub.declare(topic, hub.declared.get(topic, "viewer"))

        def emit(event_type: str, entity_id: str, payload: dict[str, Any]) -> None:
            hub.publish(tenant, topic, event_type, payload, entity_id)

        loop = asyncio.get_running_loop()
        budget = 0.0
        last = loop.time()
        while True:
            await asyncio.sleep(min(TICK, 1.0 / rate))
            now = loop.time()
            budget = min(budget + (now - last) * rate, rate)  # at most 1 s of catch-up
            last = now
            while budget >= 1.0:
                budget -= 1.0
                model.step(emit)

    run.__qualname__ = f"demo_{tenant}_{topic}"
    return run
