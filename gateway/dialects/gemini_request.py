"""A Chat Completions body as a Gemini request, for the Gemini upstream.

:func:`gemini_from_chat`: a Chat Completions body
(https://platform.openai.com/docs/api-reference/chat/create) as a Gemini
``GenerateContentRequest`` (https://ai.google.dev/api/generate-content#request-body).
The other direction (a Gemini-format client's body) is
:mod:`gateway.dialects.gemini_client_request`. docs/gemini.md lists what
does not survive. Raises :class:`~gateway.errors.InvalidRequest` for
content Gemini cannot take.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidRequest
from . import dropped
from .gemini_common import split_signature


def gemini_from_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions body as a ``GenerateContentRequest``: ``system`` and
    ``developer`` messages -> ``systemInstruction``; ``assistant`` ->
    ``model`` contents (``tool_calls`` -> ``functionCall`` parts, arguments
    parsed, a ``thoughtSignature`` carried in the id given back); ``tool``
    messages -> ``functionResponse`` parts of one ``user`` turn; ``tools`` ->
    ``functionDeclarations`` (``parametersJsonSchema``: the schema as sent);
    ``tool_choice`` -> ``toolConfig``; ``max_tokens`` /
    ``max_completion_tokens`` -> ``maxOutputTokens``, ``stop`` ->
    ``stopSequences``, sampling fields -> ``generationConfig``."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name
    for i, message in enumerate(body.get("messages") or ()):
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(contents, "user", _parts(message.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            parts = _parts(message.get("content"), f"messages[{i}].content")
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                name = function.get("name") or ""
                call_id, signature = split_signature(str(call.get("id") or ""))
                names[call_id] = name
                part: dict[str, Any] = {"name": name, "args": _arguments(function, i)}
                if call_id:
                    part["id"] = call_id
                wrapped: dict[str, Any] = {"functionCall": part}
                if signature:
                    wrapped["thoughtSignature"] = signature
                parts.append(wrapped)
            _append(contents, "model", parts)
        elif role in ("tool", "function"):
            call_id = split_signature(str(message.get("tool_call_id") or ""))[0]
            name = names.get(call_id) or message.get("name") or ""
            response = {"name": name, "response": _tool_result(message.get("content"))}
            if call_id:
                response["id"] = call_id
            _append(contents, "user", [{"functionResponse": response}])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = body.get("tools")
    if tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}]
    choice = _tool_config(body.get("tool_choice"))
    if choice is not None:
        out["toolConfig"] = {"functionCallingConfig": choice}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    dropped.drop(*(name for name in body if name not in _CHAT_SENT))
    return out


_CHAT_SENT = frozenset(
    {"model", "stream", "stream_options", "messages", "tools", "tool_choice", "max_tokens",
     "max_completion_tokens", "stop", "temperature", "top_p", "n", "seed", "presence_penalty",
     "frequency_penalty", "response_format"}
)  # fmt: skip
"""Chat Completions fields :func:`gemini_from_chat` sends on (or that the
provider sets); any other is dropped and reported (``Sluice-Dropped-Params``)."""


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    """Add a turn; consecutive turns of one role become one (Gemini alternates)."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _parts(content: object, where: str) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for item in content if isinstance(content, list) else ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append({"text": str(item.get("text") or "")})
        elif kind == "image_url":
            parts.append(_image(item.get("image_url"), where))
        else:
            raise InvalidRequest(
                f"A Gemini upstream cannot take content parts of type {kind!r}", param=where
            )
    return parts


def _image(image: object, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return {"inlineData": {"mimeType": mime, "data": data}}
    if isinstance(url, str) and url:
        return {"fileData": {"fileUri": url}}
    raise InvalidRequest("An image part needs a URL", param=where)


def _arguments(function: dict[str, Any], i: int) -> dict[str, Any]:
    raw = function.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(
            "A Gemini upstream takes tool-call arguments as a JSON object",
            param=f"messages[{i}].tool_calls",
        )
    return args


def _tool_result(content: object) -> dict[str, Any]:
    """A tool message's content as ``functionResponse.response`` (an object):
    a JSON object as is, anything else as ``{"content": text}``."""
    if isinstance(content, list):
        content = "".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and "text" in p
        )
    text = content if isinstance(content, str) else ""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"content": text}


def _declaration(tool: dict[str, Any], i: int) -> dict[str, Any]:
    function = tool.get("function") if tool.get("type") == "function" else None
    if not isinstance(function, dict):
        raise InvalidRequest(
            "A Gemini upstream takes function tools only", param=f"tools[{i}].type"
        )
    out: dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        out["description"] = function["description"]
    if function.get("parameters"):
        out["parametersJsonSchema"] = function["parameters"]
    return out


def _tool_config(choice: object) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "none":
        return {"mode": "NONE"}
    if choice == "auto":
        return {"mode": "AUTO"}
    if choice == "required":
        return {"mode": "ANY"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return None


_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap is not None:
        config["maxOutputTokens"] = cap
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    for ours, theirs in _SAMPLING:
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    return config
