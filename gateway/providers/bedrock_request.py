"""An Anthropic Messages body as a Bedrock ``Converse`` / ``ConverseStream`` body.

Shapes: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
(and botocore's ``bedrock-runtime`` service model, ``ConverseRequest``);
the input is a body the Messages validator accepted (or one the bridge
translated from Chat Completions or Responses), per
https://docs.anthropic.com/en/api/messages.

============================  ================================================
Messages                      Converse
============================  ================================================
``system`` (string / blocks)  ``system: [{"text"}]``
``messages[].content``        ``text`` -> ``{"text"}``; ``image`` (base64) ->
                              ``{"image": {"format", "source": {"bytes"}}}``;
                              ``tool_use`` -> ``toolUse``; ``tool_result`` ->
                              ``toolResult`` (``is_error`` -> ``status``);
                              ``thinking`` / ``redacted_thinking`` ->
                              ``reasoningContent``
``max_tokens``, ``temperature``, ``top_p``, ``stop_sequences``
                              ``inferenceConfig.maxTokens``, ``temperature``,
                              ``topP``, ``stopSequences``
``tools``                     ``toolConfig.tools[].toolSpec`` (``inputSchema.json``)
``tool_choice``               ``toolConfig.toolChoice``: ``auto``, ``any``,
                              ``tool``; ``none`` has no counterpart (dropped)
``top_k``, ``thinking``       ``additionalModelRequestFields`` (as Claude on
                              Bedrock takes them)
============================  ================================================

Raises :class:`~gateway.errors.InvalidRequest` for content Converse cannot
carry (an image by URL, an unknown block type); fields with no counterpart
(``metadata``, ``disable_parallel_tool_use``, ``service_tier``, ...) are
dropped and reported (:func:`~gateway.dialects.dropped.drop`).
"""

from __future__ import annotations

from typing import Any

from ..dialects.dropped import drop
from ..errors import InvalidRequest

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}  # fmt: skip
"""Anthropic ``media_type`` -> Converse ``ImageBlock.format``."""

_TRANSLATED = frozenset(
    {"model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "top_k",
     "stop_sequences", "tools", "tool_choice", "thinking"}
)  # fmt: skip
"""Messages fields with a Converse counterpart; any other is dropped and reported."""


def converse_body(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse request body for a Messages ``body`` (the model goes in
    the URL, not the body). Raises InvalidRequest (see the module docstring)."""
    out: dict[str, Any] = {"messages": [_message(m) for m in body["messages"]]}
    system = body.get("system")
    if system:
        out["system"] = [{"text": system}] if isinstance(system, str) else [
            {"text": _text(block, "system")} for block in system
        ]  # fmt: skip
    config: dict[str, Any] = {"maxTokens": body["max_tokens"]}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(src) is not None:
            config[dst] = body[src]
    if body.get("stop_sequences"):
        config["stopSequences"] = list(body["stop_sequences"])
    out["inferenceConfig"] = config
    if body.get("tools"):
        out["toolConfig"] = _tool_config(body["tools"], body.get("tool_choice"))
    extra = {key: body[key] for key in ("top_k", "thinking") if body.get(key) is not None}
    if extra:
        out["additionalModelRequestFields"] = extra
    drop(*(key for key in body if key not in _TRANSLATED))
    return out


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    blocks = [{"text": content}] if isinstance(content, str) else [_block(b) for b in content]
    return {"role": message["role"], "content": blocks}


def _text(block: Any, where: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text":
        kind = block.get("type") if isinstance(block, dict) else type(block).__name__
        raise InvalidRequest(f"{where}: only text blocks can be sent to Bedrock, got {kind!r}")
    return str(block.get("text", ""))


def _block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"text": str(block.get("text", ""))}
    if kind == "image":
        return {"image": _image(block)}
    if kind == "tool_use":
        return {"toolUse": {"toolUseId": block.get("id"), "name": block.get("name"),
                            "input": block.get("input") or {}}}  # fmt: skip
    if kind == "tool_result":
        result: dict[str, Any] = {
            "toolUseId": block.get("tool_use_id"),
            "content": _result_content(block.get("content")),
        }
        if block.get("is_error"):
            result["status"] = "error"
        return {"toolResult": result}
    if kind == "thinking":
        text: dict[str, Any] = {"text": str(block.get("thinking", ""))}
        if block.get("signature"):
            text["signature"] = block["signature"]
        return {"reasoningContent": {"reasoningText": text}}
    if kind == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block.get("data")}}
    raise InvalidRequest(f"content block {kind!r} cannot be sent to Bedrock", param="messages")


def _image(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    media = _IMAGE_FORMATS.get(str(source.get("media_type")))
    if source.get("type") != "base64" or media is None:
        raise InvalidRequest(
            "Bedrock takes images as base64 png, jpeg, gif or webp (not by URL)", param="messages"
        )
    # A blob in a rest-json body is its base64 text: the client's data as sent.
    return {"format": media, "source": {"bytes": source.get("data")}}


def _result_content(content: Any) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content or ""}]
    out: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "image":
            out.append({"image": _image(block)})
        else:
            out.append({"text": _text(block, "tool_result")})
    return out


def _tool_config(tools: list[Any], choice: Any) -> dict[str, Any]:
    specs = []
    for tool in tools:
        custom = isinstance(tool, dict) and tool.get("type", "custom") == "custom"
        if not custom or "name" not in tool:
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise InvalidRequest(f"tool type {kind!r} cannot be sent to Bedrock", param="tools")
        spec: dict[str, Any] = {
            "name": tool["name"],
            "inputSchema": {"json": tool.get("input_schema") or {"type": "object"}},
        }
        if tool.get("description"):
            spec["description"] = tool["description"]
        specs.append({"toolSpec": spec})
    out: dict[str, Any] = {"tools": specs}
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("auto", "any"):
            out["toolChoice"] = {kind: {}}
        elif kind == "tool":
            out["toolChoice"] = {"tool": {"name": choice.get("name")}}
        else:
            drop("tool_choice")  # none: Converse has no way to forbid the tools it lists
        if choice.get("disable_parallel_tool_use"):
            drop("tool_choice.disable_parallel_tool_use")
    return out
