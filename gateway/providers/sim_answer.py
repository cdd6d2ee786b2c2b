"""What the simulator answers a Chat Completions body: text or one tool call.

A request gets **one tool call** when it declares ``tools`` of type
``function`` and its messages do not end with a ``tool`` message, and either

- ``tool_choice`` is ``"required"`` (the first declared function is called),
- ``tool_choice`` names a declared function
  (``{"type": "function", "function": {"name": ...}}``), or
- the last user message contains ``call <function_name>`` for a declared
  function (and ``tool_choice`` is not ``"none"``).

The call's ``arguments`` are a JSON object built from the function's JSON
Schema ``parameters.properties`` with deterministic placeholders
(:func:`placeholder_arguments`). Everything else, including the request that
follows a tool result, gets the simulator's text. Tool-call semantics follow
https://platform.openai.com/docs/guides/function-calling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

_WORDS = (
    "Sluice", " relays", " tokens", " from", " upstream", " to", " downstream", " with",
    " explicit", " backpressure", ":", " each", " event", " waits", " for", " the",
    " client's", " socket", " to", " drain", ".",
)  # fmt: skip

ARGUMENT_PIECE_CHARS = 8
"""A tool call's ``arguments`` stream in pieces of this many characters."""


def sim_token(i: int) -> str:
    """The ``i``-th token of the simulator's text (deterministic); the text
    repeats with a space between repetitions ("... drain. Sluice relays ...")."""
    word = _WORDS[i % len(_WORDS)]
    return " " + word if i and i % len(_WORDS) == 0 else word


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call: ``name`` and its ``arguments`` (JSON object text)."""

    name: str
    arguments: str

    def pieces(self) -> list[str]:
        """``arguments`` split for streaming (at least one piece)."""
        text, size = self.arguments, ARGUMENT_PIECE_CHARS
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _placeholder(schema: Any, name: str) -> Any:
    if not isinstance(schema, dict):
        return f"sim-{name}"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_placeholder(schema.get("items"), name)]
    if kind == "object":
        return placeholder_arguments(schema)
    return f"sim-{name}"


def placeholder_arguments(parameters: Any) -> dict[str, Any]:
    """A JSON object for a JSON Schema ``object``: each of ``properties`` set
    to a placeholder by type (first ``enum`` value; string ``"sim-<name>"``,
    integer 1, number 1.5, boolean true, array of one item, nested objects)."""
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {name: _placeholder(schema, name) for name, schema in properties.items()}


def _functions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Declared function tools by name: ``{name: function object}``."""
    out: dict[str, dict[str, Any]] = {}
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") == "function" and isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name:
                out[name] = function
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _chosen(body: dict[str, Any], functions: dict[str, dict[str, Any]]) -> str | None:
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    if choice == "required":
        return next(iter(functions))
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        if named in functions:
            return str(named)
    users = [
        m for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"
    ]
    said = _text(users[-1].get("content")) if users else ""
    for name in functions:
        if re.search(rf"\bcall {re.escape(name)}\b", said):
            return name
    return None


def tool_call_for(body: dict[str, Any]) -> ToolCall | None:
    """The tool call the simulator makes for ``body``, or None for text
    (rules in the module docstring)."""
    functions = _functions(body)
    messages = body.get("messages") or ()
    if not functions or (messages and messages[-1].get("role") == "tool"):
        return None
    name = _chosen(body, functions)
    if name is None:
        return None
    arguments = placeholder_arguments(functions[name].get("parameters"))
    return ToolCall(name, orjson.dumps(arguments).decode())
