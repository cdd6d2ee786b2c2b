"""``[models.routing]``: how a model with several deployments chooses one.

Validated with pydantic like the rest of :mod:`gateway.config` (which embeds
it in every model); kept here, with the routing it configures.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RoutingSettings(BaseModel):
    """``[models.routing]``: strategy, health (cooldown) and the queue for a
    model's ``deployments`` (seconds). Ignored for a model without them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["least_busy", "latency", "weighted", "affinity"] = "least_busy"
    """``least_busy``: fewest streams open; ``latency``: power of two choices
    over a peak EWMA of upstream TTFT; ``weighted``: smooth weighted round
    robin by ``weight``; ``affinity``: consistent (rendezvous) hashing of the
    request's ``affinity_header`` or ``user`` field, else ``least_busy``."""
    affinity_header: str = Field(default="Sluice-Session", min_length=1)
    """The request header whose value keeps a conversation on one deployment
    (the body's ``user``, or Anthropic's ``metadata.user_id``, when absent)."""
    cooldown_failures: int = Field(default=3, ge=1)
    """Failures before the first token (connect errors, 5xx, 429, TTFT
    timeouts) within ``cooldown_window_s`` that start a cooldown."""
    cooldown_window_s: float = Field(default=30.0, gt=0)
    cooldown_s: float = Field(default=30.0, gt=0)
    """How long a deployment is left alone; then one trial request (half-open)."""
    max_cooldown_s: float = Field(default=300.0, gt=0)
    """Cap on a cooldown that a 429's ``Retry-After`` sets."""
    queue_size: int = Field(default=100, ge=0)
    """Requests that may wait when every deployment is at its
    ``max_concurrent_streams``; past it, 429 at once."""
    queue_timeout_s: float = Field(default=10.0, ge=0)
    """Longest wait in that queue (heartbeats meanwhile once the response is
    committed); then 429 ``deployments_busy`` with ``Retry-After``."""
    latency_decay_s: float = Field(default=10.0, gt=0)
    """Time constant of the latency strategy's peak EWMA: an estimate halves
    in about 0.7x this without new observations."""
    latency_failure_s: float = Field(default=1.0, ge=0)
    """A failure before the first token counts as an upstream TTFT of at
    least this (a peak), so the latency strategy turns away from a failing
    deployment before its cooldown starts (a fast 503 is not a fast answer)."""
    latency_default_s: float = Field(default=0.0, ge=0)
    """The latency estimate of a deployment not measured yet: 0, so a new
    one is tried at once (its first measurement, a peak, replaces it)."""
