"""Routing strategies: which of the available deployments serves a request.

Each is a pure choice over :class:`Candidate` values (measured state in, a
choice out), with its randomness from a ``random.Random`` the caller owns:

- ``least_busy``: fewest streams open; ties broken at random.
- ``latency``: power of two choices (Mitzenmacher; tower's ``p2c``): two
  candidates drawn at random, the one of lower peak-EWMA cost wins
  (:class:`~gateway.routing.ewma.PeakEwma`: TTFT estimate x (open + 1)).
- ``weighted``: smooth weighted round robin (nginx's
  ``ngx_http_upstream_get_peer``): over any run of requests each deployment
  takes its share of the weights, interleaved, not in bursts.
- ``affinity``: rendezvous (highest random weight) hashing of the request's
  key over *all* deployments, so a key keeps its deployment (and that
  server's prefix cache) while the set is unchanged, and only the keys of a
  deployment that leaves move. The hash is BLAKE2b, the same in every
  process, so every replica of a fleet sends a key to the same deployment.
  When the chosen one is unavailable, or the request has no key:
  ``least_busy`` among the available ones.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Strategy(enum.Enum):
    LEAST_BUSY = "least_busy"
    LATENCY = "latency"
    WEIGHTED = "weighted"
    AFFINITY = "affinity"


class Candidate(Protocol):
    """What a strategy reads of a deployment."""

    @property
    def name(self) -> str: ...

    @property
    def open_streams(self) -> int: ...

    @property
    def weight(self) -> float: ...

    def cost(self, now: float) -> float:
        """Peak EWMA of TTFT (seconds) x (open streams + 1)."""
        ...


C = TypeVar("C", bound=Candidate)


def least_busy(candidates: Sequence[C], rng: random.Random) -> C:
    """Fewest streams open, ties at random. ``candidates`` must not be empty."""
    fewest = min(c.open_streams for c in candidates)
    return rng.choice([c for c in candidates if c.open_streams == fewest])


def power_of_two(candidates: Sequence[C], rng: random.Random, now: float) -> C:
    """p2c over peak-EWMA cost: the cheaper of two drawn at random."""
    if len(candidates) == 1:
        return candidates[0]
    a, b = rng.sample(range(len(candidates)), 2)
    first, second = candidates[a], candidates[b]
    return first if first.cost(now) <= second.cost(now) else second


class SmoothWeighted:
    """Smooth weighted round robin; one per model (its state is the running
    weights). Each pick: every candidate's running weight grows by its
    weight, the largest wins and gives back the candidates' total."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates: Sequence[C]) -> C:
        current = self._current
        total = 0.0
        best: C | None = None
        best_value = 0.0
        for c in candidates:
            value = current.get(c.name, 0.0) + c.weight
            current[c.name] = value
            total += c.weight
            if best is None or value > best_value:
                best, best_value = c, value
        assert best is not None, "no candidates"
        current[best.name] = best_value - total
        return best


def rendezvous(key: str, names: Sequence[str]) -> str:
    """The name with the highest BLAKE2b(key, name) score (HRW hashing)."""

    def score(name: str) -> bytes:
        return hashlib.blake2b(f"{name}\0{key}".encode(), digest_size=8).digest()

    return max(names, key=score)


def affinity(
    key: str | None, everyone: Sequence[str], candidates: Sequence[C], rng: random.Random
) -> C:
    """The key's deployment (by :func:`rendezvous` over ``everyone``) when it
    is among ``candidates``; else ``least_busy``."""
    if key:
        home = rendezvous(key, everyone)
        for c in candidates:
            if c.name == home:
                return c
    return least_busy(candidates, rng)
