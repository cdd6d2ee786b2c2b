"""What one mock stream does: pace, length, jitter, fault.

A :class:`MockScenario` starts from the server's defaults (CLI flags) and is
overridden, in increasing priority, by

1. the upstream model name, ``mock-ttft50-itl20-n100-j2-b64-fclose_mid-at10``
   (segments after ``mock``, any order; a gateway always forwards ``model``
   as its configured ``upstream_model``);
2. a prompt directive anywhere in the request's text,
   ``[mock ttft_ms=50 itl_ms=20 tokens=100 fault=stall_mid]`` (a gateway
   forwards the prompt verbatim, so one gateway model serves every scenario);
3. request headers ``x-mock-ttft-ms``, ``x-mock-itl-ms``, ``x-mock-tokens``,
   ``x-mock-jitter-ms``, ``x-mock-token-bytes``, ``x-mock-fault``,
   ``x-mock-fault-at``, ``x-mock-retry-after``, ``x-mock-stall-s``
   (for direct use; do not expect a gateway to forward them).

A client tag ``[lt-id:<id>]`` in the prompt lets the load generator match the
mock's per-request record with its own (cancel latency through a gateway).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

Fault = Literal["none", "http_503", "http_429", "error_mid", "stall_mid", "close_mid"]
FAULTS: Final[tuple[str, ...]] = get_args(Fault)

_DIRECTIVE_RE: Final = re.compile(r"\[mock ([^\]]*)\]")
_CLIENT_ID_RE: Final = re.compile(r"\[lt-id:([A-Za-z0-9_.-]{1,64})\]")
# Model-name segment prefixes, longest first so "ttft" wins over "t...".
_MODEL_SEGMENTS: Final[tuple[tuple[str, str], ...]] = (
    ("ttft", "ttft_ms"),
    ("itl", "itl_ms"),
    ("at", "fault_at"),
    ("n", "tokens"),
    ("j", "jitter_ms"),
    ("b", "token_bytes"),
    ("f", "fault"),
)


class ScenarioError(ValueError):
    """A scenario override names an unknown key or carries a bad value."""


@dataclass(frozen=True, slots=True)
class MockScenario:
    """One stream's behaviour. Times in milliseconds unless named ``_s``.

    ``fault_at`` is the content-token index at which a mid-stream fault fires
    (``-1``: half way). ``stall_s`` bounds a stall; the stream then closes.
    ``token_bytes`` pads each token's text to that many bytes (0: short words).
    """

    ttft_ms: float = 50.0
    itl_ms: float = 20.0
    tokens: int = 100
    jitter_ms: float = 0.0
    token_bytes: int = 0
    fault: Fault = "none"
    fault_at: int = -1
    retry_after_s: int = 1
    stall_s: float = 600.0

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.itl_ms < 0 or self.jitter_ms < 0 or self.stall_s < 0:
            raise ScenarioError("times must be >= 0")
        if not 0 <= self.tokens <= 100_000_000:
            raise ScenarioError("tokens must be in [0, 1e8]")
        if not 0 <= self.token_bytes <= 1 << 20:
            raise ScenarioError("token_bytes must be in [0, 1 MiB]")
        if self.fault not in FAULTS:
            raise ScenarioError(f"fault must be one of {', '.join(FAULTS)}")

    @property
    def fault_index(self) -> int:
        """The token index where a mid-stream fault fires."""
        return self.tokens // 2 if self.fault_at < 0 else min(self.fault_at, self.tokens)

    def with_overrides(self, values: Mapping[str, str]) -> MockScenario:
        """A copy with ``values`` (field name -> text) applied; raises ScenarioError."""
        if not values:
            return self
        changes: dict[str, object] = {}
        for key, text in values.items():
            current = getattr(self, key, None) if key in _FIELDS else None
            if current is None:
                raise ScenarioError(f"unknown scenario key {key!r}")
            try:
                if isinstance(current, str):
                    changes[key] = text
                elif isinstance(current, int):
                    changes[key] = int(float(text))
                else:
                    changes[key] = float(text)
            except ValueError as exc:
                raise ScenarioError(f"bad value for {key}: {text!r}") from exc
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def directive(self) -> str:
        """This scenario as a prompt directive (fields that differ from defaults)."""
        return directive_for(self)

    def full_directive(self) -> str:
        """Every field as a prompt directive: independent of the server's defaults."""
        items = (f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))
        return "[mock " + " ".join(items) + "]"


_FIELDS: Final[frozenset[str]] = frozenset(f.name for f in dataclasses.fields(MockScenario))
HEADER_PREFIX: Final = "x-mock-"
_ALIASES: Final[dict[str, str]] = {"retry_after": "retry_after_s"}


def header_name(field: str) -> str:
    """``ttft_ms`` -> ``x-mock-ttft-ms``."""
    return HEADER_PREFIX + field.replace("_", "-")


def directive_for(scenario: MockScenario, base: MockScenario | None = None) -> str:
    """``[mock k=v ...]`` with every field of ``scenario`` that differs from ``base``."""
    ref = base or MockScenario()
    parts = [
        f"{f.name}={getattr(scenario, f.name)}"
        for f in dataclasses.fields(scenario)
        if getattr(scenario, f.name) != getattr(ref, f.name)
    ]
    return "[mock " + " ".join(parts) + "]"


def overrides_from_model(model: str) -> dict[str, str]:
    """Overrides encoded in a model name ``mock-...``; {} for other names."""
    parts = model.split("-")
    if len(parts) < 2 or parts[0] != "mock":
        return {}
    out: dict[str, str] = {}
    for seg in parts[1:]:
        for prefix, field in _MODEL_SEGMENTS:
            if seg.startswith(prefix) and len(seg) > len(prefix):
                out[field] = seg[len(prefix) :]
                break
    return out


def overrides_from_text(text: str) -> dict[str, str]:
    """Overrides from ``[mock k=v ...]`` directives in prompt text."""
    out: dict[str, str] = {}
    for match in _DIRECTIVE_RE.finditer(text):
        for item in match.group(1).split():
            key, sep, value = item.partition("=")
            if sep:
                out[key] = value
    return out


def overrides_from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Overrides from ``x-mock-*`` headers (``x-mock-fault`` -> ``fault``)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith(HEADER_PREFIX):
            key = low[len(HEADER_PREFIX) :].replace("-", "_")
            out[_ALIASES.get(key, key)] = value
    return out


def client_id_from_text(text: str) -> str | None:
    """The load generator's ``[lt-id:...]`` tag, if present."""
    match = _CLIENT_ID_RE.search(text)
    return match.group(1) if match else None


def resolve(base: MockScenario, model: str, text: str, headers: Mapping[str, str]) -> MockScenario:
    """Apply model-name, prompt and header overrides to ``base``, in that order."""
    merged = overrides_from_model(model)
    merged.update(overrides_from_text(text))
    merged.update(overrides_from_headers(headers))
    return base.with_overrides(merged)
