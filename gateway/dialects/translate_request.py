"""Request bodies between the two dialects.

- :func:`anthropic_from_openai`: a Chat Completions body
  (https://platform.openai.com/docs/api-reference/chat/create) as a Messages
  body (https://docs.anthropic.com/en/api/messages).
- :func:`openai_from_anthropic`: the reverse, for OpenAI-compatible upstreams
  and the simulator.

Both take a body the client dialect's validator accepted and raise
:class:`~gateway.errors.InvalidRequest` (400) for content that has no
counterpart upstream (e.g. an audio part, a server tool) rather than drop it
silently. Reasoning is translated (``reasoning_effort`` <-> ``thinking`` with a
budget: :data:`THINKING_BUDGET`). Sampling knobs with no counterpart are
dropped and reported (:func:`~gateway.dialects.dropped.drop`: the
``Sluice-Dropped-Params`` header and the log line); docs/anthropic.md lists
every one and why.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from ..errors import InvalidRequest
from .dropped import drop

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent to Anthropic when an OpenAI client gives none (Anthropic
requires it; OpenAI's default is "up to the context window")."""

_ANTHROPIC_EXTENSIONS = ("top_k", "thinking", "metadata")
"""Anthropic-only fields an OpenAI client may send; relayed as given."""

_OPENAI_TRANSLATED = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options",
     "temperature", "top_p", "stop", "tools", "tool_choice", "parallel_tool_calls", "user",
     "n", "reasoning_effort", *_ANTHROPIC_EXTENSIONS}
)  # fmt: skip
"""Chat Completions fields with an Anthropic counterpart (``stream_options``
and ``n`` = 1 are the gateway's own); any other is dropped and reported."""

THINKING_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
"""``reasoning_effort`` -> Anthropic ``thinking.budget_tokens`` (Anthropic's
minimum is 1024, and the budget must stay below ``max_tokens``)."""

MIN_THINKING_BUDGET = 1024


LengthField = Literal["max_tokens", "max_completion_tokens"]
"""The two names of a Chat Completions length cap."""


def with_length_field(body: dict[str, Any], field: LengthField) -> dict[str, Any]:
    """``body`` with its length cap under ``field``, the name the upstream honours.

    OpenAI's API takes both names for most models, but its reasoning models
    reject ``max_tokens`` (400 ``unsupported_parameter``); llama.cpp's Python
    server and Ollama honour only ``max_tokens`` and ignore
    ``max_completion_tokens`` (8 asked, 26 generated). A body with both keeps
    ``max_completion_tokens``'s value (OpenAI's precedence, and vLLM's).
    Returns ``body`` itself when there is nothing to rename, else a copy.
    """
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    if other not in body:
        return body
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    out = {k: v for k, v in body.items() if k not in ("max_tokens", "max_completion_tokens")}
    if value is not None:
        out[field] = value
    return out


# -- OpenAI client -> Anthropic upstream ------------------------------------


def _text_of(content: Any, where: str) -> str:
    """Plain text of a string or a list of ``text`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidRequest(f"{where}: only text parts can be translated, got {kind!r}")
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url part without a url", param="messages")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if not header.endswith(";base64"):
            # Messages image sources are base64 or a URL only.
            raise InvalidRequest("a data: image URL must be base64 (';base64')", param="messages")
        media_type = header[5:].split(";")[0]
        source = {"type": "base64", "media_type": media_type, "data": data}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part))
        else:
            raise InvalidRequest(
                f"content part {kind!r} cannot be sent to an Anthropic upstream", param="messages"
            )
    return blocks


def _tool_use_block(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or call.get("type", "function") != "function":
        raise InvalidRequest("only function tool calls can be translated", param="messages")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param="messages")
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    # reasoning_content is not replayed: Anthropic only accepts thinking
    # blocks that carry the signature it issued, which OpenAI clients lack.
    text = _text_of(message.get("content"), "assistant message")
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    blocks.extend(_tool_use_block(call) for call in message.get("tool_calls") or ())
    return blocks


def _tool_result_block(message: dict[str, Any]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("a tool message needs tool_call_id", param="messages")
    content = _text_of(message.get("content"), "tool message")
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


def _collapse(turn: dict[str, Any]) -> dict[str, Any]:
    content = turn["content"]
    if len(content) == 1 and set(content[0]) == {"type", "text"} and content[0]["type"] == "text":
        return {"role": turn["role"], "content": content[0]["text"]}
    return turn


def _anthropic_messages(messages: list[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            # Anthropic has one top-level system prompt; later ones are hoisted.
            text = _text_of(message.get("content"), f"{role} message")
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"))
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role, blocks = "user", [_tool_result_block(message)]
        else:
            raise InvalidRequest(f"role {role!r} cannot be translated", param="messages")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, [_collapse(t) for t in turns]


def _anthropic_tool(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or tool.get("type") != "function":
        raise InvalidRequest("only function tools can be translated", param="tools")
    out = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _anthropic_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise InvalidRequest(f"tool_choice {choice!r} cannot be translated", param="tool_choice")
    if parallel is False:
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def anthropic_from_openai(body: dict[str, Any]) -> dict[str, Any]:
    """A validated Chat Completions body as a Messages body.

    ``max_tokens`` is ``max_completion_tokens``, else ``max_tokens``, else
    :data:`DEFAULT_MAX_TOKENS`; ``temperature`` is clamped to Anthropic's
    0..1; ``stop`` becomes ``stop_sequences``; ``user`` becomes
    ``metadata.user_id``. Raises InvalidRequest for ``n`` > 1 and for content
    or tools with no Anthropic counterpart.
    """
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("n > 1 cannot be served by an Anthropic upstream", param="n")
    system, messages = _anthropic_messages(body["messages"])
    out: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system[0] if len(system) == 1 else [
            {"type": "text", "text": text} for text in system
        ]  # fmt: skip
    if "stream" in body:
        out["stream"] = body["stream"]
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = [_anthropic_tool(t) for t in body["tools"]]
    choice = _anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and body.get("tools"):
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    for key in _ANTHROPIC_EXTENSIONS:
        if key in body:
            out[key] = body[key]
    if "thinking" not in out:
        _thinking_from_effort(body.get("reasoning_effort"), out)
    drop(*(key for key in body if key not in _OPENAI_TRANSLATED))
    return out


def _thinking_from_effort(effort: object, out: dict[str, Any]) -> None:
    """``reasoning_effort`` as ``thinking`` on ``out`` (a Messages body).

    ``none`` is no thinking (Anthropic's default). The budget is capped below
    ``max_tokens``; with less room than Anthropic's minimum budget, or with a
    forced tool (which Anthropic does not allow with thinking), the effort is
    dropped. Thinking does not allow a changed ``temperature`` or ``top_k``:
    those are dropped when thinking is turned on."""
    if effort is None or effort == "none":
        return
    budget = min(THINKING_BUDGET.get(str(effort), THINKING_BUDGET["medium"]), out["max_tokens"] - 1)
    forced = (out.get("tool_choice") or {}).get("type") in ("any", "tool")
    if budget < MIN_THINKING_BUDGET or forced:
        drop("reasoning_effort")
        return
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    for key in ("temperature", "top_k"):
        if key in out:
            del out[key]
            drop(key)


# -- Anthropic client -> OpenAI-dialect upstream ----------------------------


def _block_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    return _text_of(content or [], where)


def _image_part(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = str(source.get("url"))
    else:
        raise InvalidRequest("only base64 and url images can be translated", param="messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "tool_result":
            # is_error has no OpenAI counterpart; the text carries the failure.
            text = _block_text(block.get("content"), "tool_result")
            tools.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}
            )
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image_part(block))
        else:
            raise InvalidRequest(
                f"content block {kind!r} cannot be sent to an OpenAI-dialect upstream",
                param="messages",
            )
    if not parts:
        return tools
    if all(p["type"] == "text" for p in parts) and len(parts) == 1:
        return [*tools, {"role": "user", "content": parts[0]["text"]}]
    return [*tools, {"role": "user", "content": parts}]


def _assistant_message(content: Any) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # OpenAI-compatible servers reject reasoning in input (DeepSeek: 400)
        else:
            raise InvalidRequest(
                f"content block {kind!r} cannot be sent to an OpenAI-dialect upstream",
                param="messages",
            )
    # Only tool calls: ``content: ""``, not null: llama-cpp-python's server
    # rejects null (a 500), and chat templates that print
    # ``message['content']`` need the key (SmolLM2's).
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return message


def _openai_tool(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "custom") != "custom" or "name" not in tool:
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequest(f"tool type {kind!r} cannot be translated", param="tools")
    function: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _openai_tool_choice(choice: dict[str, Any]) -> Any:
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise InvalidRequest(f"tool_choice type {kind!r} cannot be translated", param="tool_choice")


def openai_from_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """A validated Messages body as a Chat Completions body.

    ``system`` becomes a leading system message, ``tool_result`` blocks
    become ``tool`` messages, ``stop_sequences`` becomes ``stop``,
    ``metadata.user_id`` becomes ``user``; a streaming request asks for a
    usage chunk (``stream_options.include_usage``) so the client gets token
    counts. Raises InvalidRequest for blocks or tools with no counterpart.
    """
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _block_text(system, "system")})
    for message in body["messages"]:
        if message["role"] == "user":
            messages.extend(_user_messages(message["content"]))
        else:
            messages.append(_assistant_message(message["content"]))
    out: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body["max_tokens"],
    }
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        out["tools"] = [_openai_tool(t) for t in body["tools"]]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            out["tool_choice"] = _openai_tool_choice(choice)
            if choice.get("disable_parallel_tool_use"):
                out["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if isinstance(metadata, dict) and set(metadata) - {"user_id"}:
        drop("metadata")
    effort = _effort_from_thinking(body.get("thinking"))
    if effort is not None:
        out["reasoning_effort"] = effort
    drop(*(key for key in body if key not in _ANTHROPIC_TRANSLATED))
    return out


_ANTHROPIC_TRANSLATED = frozenset(
    {"model", "messages", "max_tokens", "system", "stream", "temperature", "top_p",
     "stop_sequences", "tools", "tool_choice", "metadata", "thinking"}
)  # fmt: skip
"""Messages fields with a Chat Completions counterpart; any other is dropped
and reported."""


def _effort_from_thinking(thinking: object) -> str | None:
    """Anthropic ``thinking`` as ``reasoning_effort``: by ``budget_tokens``
    (below 4096: ``low``, below 16384: ``medium``, else ``high``, the values
    every OpenAI reasoning model takes); ``disabled``: none sent; any other
    kind is dropped and reported."""
    if not isinstance(thinking, dict) or thinking.get("type") == "disabled":
        return None
    budget = thinking.get("budget_tokens")
    if thinking.get("type") != "enabled" or not isinstance(budget, int):
        drop("thinking")
        return None
    if budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"
