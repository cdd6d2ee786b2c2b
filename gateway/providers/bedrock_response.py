"""A Bedrock ``Converse`` response as an Anthropic Message object.

Input: ``ConverseResponse``
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html):
``output.message.content[]`` (``text``, ``toolUse``, ``reasoningContent``),
``stopReason``, ``usage``. Output: a Message
(https://docs.anthropic.com/en/api/messages), which the bridge turns into the
client's dialect. Content blocks with no Message counterpart (citations,
images, guard content) are left out; stop reasons and usage as in the stream
(:mod:`gateway.providers.bedrock_stream`).
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import UpstreamProtocolError
from .bedrock_stream import anthropic_usage, stop_reason


def message_from_converse(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """The Message for a Converse response. Raises UpstreamProtocolError for a
    response without ``output.message.content`` or with values of the wrong type."""
    output = payload.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise UpstreamProtocolError(
            "The upstream sent a response without output.message.content",
            detail=repr(payload)[:300],
        )
    blocks = [b for b in (_block(block) for block in content) if b is not None]
    extra = payload.get("additionalModelResponseFields")
    sequence = extra.get("stop_sequence") if isinstance(extra, dict) else None
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason(payload.get("stopReason")),
        "stop_sequence": sequence if isinstance(sequence, str) else None,
        "usage": anthropic_usage(payload.get("usage", {})),
    }


def _block(block: object) -> dict[str, Any] | None:
    if not isinstance(block, dict):
        raise UpstreamProtocolError("The upstream sent a content block that is not an object")
    if "text" in block:
        return {"type": "text", "text": _str(block["text"])}
    tool = block.get("toolUse")
    if isinstance(tool, dict):
        tool_input = tool.get("input")
        if not isinstance(tool_input, dict):
            raise UpstreamProtocolError("The upstream sent a tool input that is not an object")
        return {"type": "tool_use", "id": _str(tool.get("toolUseId")),
                "name": _str(tool.get("name")), "input": tool_input}  # fmt: skip
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict):
        text = reasoning.get("reasoningText")
        if isinstance(text, dict):
            signature = text.get("signature")
            return {"type": "thinking", "thinking": _str(text.get("text")),
                    "signature": signature if isinstance(signature, str) else ""}  # fmt: skip
        if isinstance(reasoning.get("redactedContent"), str):
            return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    return None


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise UpstreamProtocolError(
            "The upstream sent a value that is not a string", detail=repr(value)[:300]
        )
    return value
