"""A Gemini-format client's request as a Chat Completions body.

:func:`chat_from_gemini`: a ``GenerateContentRequest``
(https://ai.google.dev/api/generate-content#request-body) as a Chat
Completions body (https://platform.openai.com/docs/api-reference/chat/create),
served by any provider through the existing bridge (:mod:`gateway.api.gemini`).
docs/gemini.md lists what does not survive. Raises
:class:`~gateway.errors.InvalidRequest` for a body that is not a
``GenerateContentRequest`` or holds parts no provider can take.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from ..errors import InvalidRequest
from . import dropped
from .gemini_common import field, id_with_signature, split_signature


def chat_from_gemini(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """A ``GenerateContentRequest`` as a Chat Completions body for ``model``:
    ``systemInstruction`` -> a ``system`` message; ``user`` / ``model``
    contents -> ``user`` / ``assistant`` messages (``functionCall`` parts ->
    ``tool_calls``, ``functionResponse`` parts -> ``tool`` messages,
    ``inlineData`` / ``fileData`` -> ``image_url`` parts); ``tools`` ->
    function tools; ``toolConfig`` -> ``tool_choice``; ``generationConfig`` ->
    ``max_tokens``, ``stop``, sampling fields. A call without an ``id`` gets
    ``call_<n>`` and its response is matched by name, in order; a call's
    ``thoughtSignature`` rides in its id (:func:`~.gemini_common.id_with_signature`).

    Raises :class:`InvalidRequest` for a body that is not a
    ``GenerateContentRequest`` (no ``contents``, parts that are not objects).
    """
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest("'contents' must be a non-empty list of Content", param="contents")
    messages: list[dict[str, Any]] = []
    system = field(body, "systemInstruction", "system_instruction")
    if system is not None:
        text = _text_of(system)
        if text:
            messages.append({"role": "system", "content": text})
    pending: list[tuple[str, str]] = []  # (name, id) of calls not yet answered
    counter = 0
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise InvalidRequest("Each Content needs a 'parts' list", param=f"contents[{i}]")
        role = content.get("role") or "user"
        parts = content["parts"]
        if role == "model":
            message, counter = _assistant(parts, counter, pending, i)
            messages.append(message)
            continue
        user: list[dict[str, Any]] = []
        for j, part in enumerate(parts):
            where = f"contents[{i}].parts[{j}]"
            if not isinstance(part, dict):
                raise InvalidRequest("A Part must be an object", param=where)
            answer = field(part, "functionResponse", "function_response")
            if answer is not None:
                messages.append(_tool_message(answer, pending))
                continue
            converted = _user_part(part, where)
            if converted is not None:
                user.append(converted)
        if user:
            only_text = all(p["type"] == "text" for p in user)
            joined = "".join(p["text"] for p in user) if only_text else None
            messages.append({"role": "user", "content": joined if only_text else user})
    out: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if stream:
        out["stream_options"] = {"include_usage": True}
    tools = _chat_tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    choice = _tool_choice(field(body, "toolConfig", "tool_config"))
    if choice is not None and tools:
        out["tool_choice"] = choice
    out.update(_chat_config(field(body, "generationConfig", "generation_config")))
    dropped.drop(*(name for name in body if name not in _GEMINI_READ))
    return out


_GEMINI_READ = frozenset(
    {"contents", "systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
     "generationConfig", "generation_config", "model"}
)  # fmt: skip
"""``GenerateContentRequest`` fields :func:`chat_from_gemini` reads; any
other (``safetySettings``, ``cachedContent``, ``labels``) is dropped and reported."""


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    parts = content.get("parts") if isinstance(content, dict) else None
    return "".join(
        str(p.get("text") or "") for p in parts or () if isinstance(p, dict) and "text" in p
    )


def _assistant(
    parts: list[Any], counter: int, pending: list[tuple[str, str]], i: int
) -> tuple[dict[str, Any], int]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought"):
            continue  # thought summaries are not sent back as history
        call = field(part, "functionCall", "function_call")
        if isinstance(call, dict):
            name = str(call.get("name") or "")
            call_id = id_with_signature(
                str(call.get("id") or f"call_{counter}"),
                field(part, "thoughtSignature", "thought_signature"),
            )
            counter += 1
            pending.append((name, call_id))
            arguments = orjson.dumps(call.get("args") or {}).decode()
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": name, "arguments": arguments}})  # fmt: skip
        elif isinstance(part.get("text"), str):
            text.append(part["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message, counter


def _tool_message(answer: object, pending: list[tuple[str, str]]) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise InvalidRequest("A functionResponse must be an object", param="contents")
    name = str(answer.get("name") or "")
    given = answer.get("id")
    match = next(
        (p for p in pending if (split_signature(p[1])[0] == given if given else p[0] == name)),
        None,
    )
    call_id = match[1] if match else str(given or f"call_{name}")
    pending[:] = [p for p in pending if p[1] != call_id]
    response = answer.get("response")
    return {"role": "tool", "tool_call_id": str(call_id),
            "content": orjson.dumps(response if response is not None else {}).decode()}  # fmt: skip


def _user_part(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    if isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    inline = field(part, "inlineData", "inline_data")
    if isinstance(inline, dict):
        mime = field(inline, "mimeType", "mime_type") or "application/octet-stream"
        data = inline.get("data") or ""
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode()
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    file = field(part, "fileData", "file_data")
    if isinstance(file, dict):
        return {"type": "image_url", "image_url": {"url": field(file, "fileUri", "file_uri")}}
    raise InvalidRequest(
        f"This Part cannot be served through the gateway: {sorted(part)[:5]}", param=where
    )


def _chat_tools(tools: object) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        declarations = field(tool, "functionDeclarations", "function_declarations")
        for d in declarations if isinstance(declarations, list) else ():
            function: dict[str, Any] = {"name": d.get("name")}
            if d.get("description"):
                function["description"] = d["description"]
            schema = field(d, "parametersJsonSchema", "parameters_json_schema")
            if schema is None and d.get("parameters") is not None:
                schema = json_schema(d["parameters"])
            if schema is not None:
                function["parameters"] = schema
            out.append({"type": "function", "function": function})
    return out


def json_schema(schema: Any) -> Any:
    """A Gemini ``Schema`` (OpenAPI 3.0 subset, ``type`` in capitals:
    https://ai.google.dev/api/caching#Schema) as JSON Schema: type names in
    lower case, ``nullable`` as a ``null`` type, snake_case keys left as
    they are (the field names JSON Schema uses are the same words)."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: json_schema(v) for k, v in value.items()}
        elif key in ("items", "anyOf", "any_of"):
            out["anyOf" if key == "any_of" else key] = json_schema(value)
        elif key == "nullable":
            continue
        else:
            out[key] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _tool_choice(config: object) -> Any:
    calling = (
        field(config, "functionCallingConfig", "function_calling_config")
        if isinstance(config, dict)
        else None
    )
    if not isinstance(calling, dict):
        return None
    mode = str(calling.get("mode") or "AUTO").upper()
    allowed = field(calling, "allowedFunctionNames", "allowed_function_names")
    if mode == "NONE":
        return "none"
    if mode in ("ANY", "VALIDATED") and isinstance(allowed, list) and len(allowed) == 1:
        return {"type": "function", "function": {"name": allowed[0]}}
    if mode == "ANY":
        return "required"
    return "auto"


_CHAT_SAMPLING = (
    ("temperature", "temperature", "temperature"),
    ("topP", "top_p", "top_p"),
    ("candidateCount", "candidate_count", "n"),
    ("seed", "seed", "seed"),
    ("presencePenalty", "presence_penalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty", "frequency_penalty"),
)


_CONFIG_READ = frozenset(
    {"maxOutputTokens", "max_output_tokens", "stopSequences", "stop_sequences",
     "responseMimeType", "response_mime_type", "responseJsonSchema", "response_json_schema",
     "responseSchema", "response_schema",
     *(name for camel, snake, _ in _CHAT_SAMPLING for name in (camel, snake))}
)  # fmt: skip
"""``generationConfig`` fields :func:`chat_from_gemini` reads; any other
(``topK``, ``thinkingConfig``, ``responseModalities``) is dropped and reported."""


def _chat_config(config: object) -> dict[str, Any]:
    if not isinstance(config, dict):
        return {}
    dropped.drop(*(f"generationConfig.{n}" for n in config if n not in _CONFIG_READ))
    out: dict[str, Any] = {}
    cap = field(config, "maxOutputTokens", "max_output_tokens")
    if cap is not None:
        out["max_tokens"] = cap
    stop = field(config, "stopSequences", "stop_sequences")
    if stop:
        out["stop"] = stop
    for camel, snake, ours in _CHAT_SAMPLING:
        value = field(config, camel, snake)
        if value is not None:
            out[ours] = value
    if field(config, "responseMimeType", "response_mime_type") == "application/json":
        schema = field(config, "responseJsonSchema", "response_json_schema")
        if schema is None and field(config, "responseSchema", "response_schema") is not None:
            schema = json_schema(field(config, "responseSchema", "response_schema"))
        out["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
            if schema is not None
            else {"type": "json_object"}
        )
    return out
