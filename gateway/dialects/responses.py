"""The OpenAI Responses API as a client dialect: requests in, Response objects out.

API reference: https://platform.openai.com/docs/api-reference/responses
(create, the Response object). Sluice serves Responses requests through the
Chat Completions path it already has: a request becomes a Chat Completions
body (:func:`chat_from_responses`), and a chat completion becomes a Response
object (:func:`response_from_completion`); streams are translated event by
event in :mod:`gateway.dialects.translate_responses`.

Supported request fields: ``model``, ``input`` (a string, or a list of
message items with text content, ``function_call`` and
``function_call_output`` items), ``instructions``, ``tools`` of type
``function``, ``tool_choice``, ``parallel_tool_calls``, ``max_output_tokens``,
``temperature``, ``top_p``, ``metadata``, ``stream``, ``store``, ``user``,
``text`` (``format`` text, ``json_object`` or ``json_schema``; ``verbosity``),
``truncation``, ``store`` (default true: the response is kept in the stream
store), ``background``, ``previous_response_id`` (its chain rebuilt by
:func:`gateway.api.responses._continue` from :func:`output_as_input`),
and what the popular clients send by default: ``include``, ``reasoning``,
``stream_options``, ``prompt_cache_key``, ``prompt_cache_retention``,
``prompt_cache_options``,
``safety_identifier``, ``service_tier``, ``max_tool_calls``. Fields with a
Chat Completions counterpart are translated (``reasoning.effort`` ->
``reasoning_effort``, ``text.format`` -> ``response_format``, ...); fields that
only tune generation are dropped and reported (:mod:`gateway.dialects.dropped`);
docs/responses.md has the table. Any other field, and one whose loss would
change the answer (``top_logprobs``, ``include`` of logprobs, ``conversation``,
``prompt``), gets a 400 naming the field.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRequest
from .dropped import drop
from .openai import MAX_MESSAGES, MAX_TOKENS_LIMIT, invalid_from
from .translate_common import incomplete_reason

ROLES = ("user", "assistant", "system", "developer")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_Strict):
    """``text.format``: plain text, JSON mode, or Structured Outputs."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, min_length=1, max_length=64)
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(_Strict):
    """``reasoning``: ``effort`` is translated; a summary is never produced."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


LOGPROBS_INCLUDE = "message.output_text.logprobs"
"""The one ``include`` value Sluice refuses: the answer would lack what it asks for."""


class ResponsesRequest(_Strict):
    """The validated view of a Responses request body (see the module docstring)."""

    model: str = Field(min_length=1, max_length=256)
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_MESSAGES)]
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=False)] | None = None
    metadata: dict[str, str] | None = None
    stream: bool = False
    store: bool | None = None
    user: str | None = None
    text: TextConfig | None = None
    truncation: Literal["disabled", "auto"] | None = None
    background: bool | None = None
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=256)
    include: list[str] | None = None
    reasoning: Reasoning | None = None
    stream_options: dict[str, Any] | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    prompt_cache_retention: str | None = Field(default=None, max_length=64)
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = Field(default=None, max_length=256)
    service_tier: str | None = Field(default=None, max_length=64)
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None


def parse_responses_request(body: dict[str, Any]) -> ResponsesRequest:
    """Validate ``body``. Raises :class:`~gateway.errors.InvalidRequest` (400)
    naming the first bad or unsupported field."""
    try:
        request = ResponsesRequest.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "extra_forbidden":
            param = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(
                f"'{param}' is not supported by Sluice's Responses API", param=param
            ) from None
        raise invalid_from(err) from None
    if request.background and request.store is False:
        raise InvalidRequest("A background response must be stored ('store')", param="store")
    if request.include and LOGPROBS_INCLUDE in request.include:
        raise InvalidRequest(
            f"'include' of {LOGPROBS_INCLUDE!r} is not supported by Sluice's Responses API",
            param="include",
        )
    fmt = request.text.format if request.text else None
    incomplete = fmt is not None and (fmt.name is None or fmt.json_schema is None)
    if fmt is not None and fmt.type == "json_schema" and incomplete:
        raise InvalidRequest(
            "A 'json_schema' text format needs 'name' and 'schema'", param="text.format"
        )
    return request


def _text_of(content: object, where: str) -> str:
    """Message content (a string or ``input_text``/``output_text`` parts) as text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise InvalidRequest(
                    f"Only text content is supported; got {kind!r}", param=f"{where}[{i}]"
                )
        return "".join(parts)
    raise InvalidRequest("Message content must be a string or a list of parts", param=where)


def _has_image(content: list[Any]) -> bool:
    return any(isinstance(part, dict) and part.get("type") == "input_image" for part in content)


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    """A Responses ``input_image`` part as a Chat Completions ``image_url`` part.

    ``image_url`` is a URL or a ``data:`` URL with base64 content
    (https://platform.openai.com/docs/api-reference/responses/create,
    ``input_image``); ``detail`` is kept. An image given by ``file_id`` has
    no Chat Completions counterpart: 400."""
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(
            "Only input_image parts with an image_url (a URL or a data: URL) can be "
            "translated; file_id images are not supported",
            param=where,
        )
    image: dict[str, Any] = {"url": url}
    if isinstance(part.get("detail"), str):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _user_parts(content: list[Any], where: str) -> list[dict[str, Any]]:
    """User content with images: Chat Completions content parts (text and
    ``image_url``, in order)."""
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        at = f"{where}.content[{i}]"
        if kind == "input_image":
            parts.append(_image_part(part, at))
        elif kind in ("input_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        else:
            raise InvalidRequest(
                f"Only text and image content is supported; got {kind!r}", param=at
            )
    return parts


def _messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
        return messages
    for i, item in enumerate(request.input):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise InvalidRequest(f"Unknown role {role!r}", param=f"{where}.role")
            content = item.get("content")
            if role == "user" and isinstance(content, list) and _has_image(content):
                messages.append({"role": role, "content": _user_parts(content, where)})
                continue
            text = _text_of(content, f"{where}.content")
            messages.append({"role": role, "content": text})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls share one message
            else:
                # ``content: ""``, not null or absent: llama-cpp-python's server
                # rejects null (a 500) and chat templates that print
                # ``message['content']`` fail without it (SmolLM2's: a 500).
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        else:
            raise InvalidRequest(f"Input items of type {kind!r} are not supported", param=where)
    return messages


def chat_from_responses(body: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions request body for a (validated) Responses body.

    Usage is always requested (``stream_options.include_usage``): the
    ``response.completed`` event carries it.
    """
    request = ResponsesRequest.model_validate(body)
    chat: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
    if request.tools:
        chat["tools"] = [
            {
                "type": "function",
                "function": t.model_dump(exclude={"type"}, exclude_none=True),
            }
            for t in request.tools
        ]
    if isinstance(request.tool_choice, dict):
        name = request.tool_choice.get("name")
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif request.tool_choice is not None:
        chat["tool_choice"] = request.tool_choice
    for field in PASSED_ON:
        value = getattr(request, field)
        if value is not None:
            chat[field] = value
    if request.max_output_tokens is not None:
        chat["max_completion_tokens"] = request.max_output_tokens
    _translate_tuning(request, chat)
    if request.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


PASSED_ON = (
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "user",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
)
"""Responses fields that Chat Completions has under the same name and meaning."""


def _translate_tuning(request: ResponsesRequest, chat: dict[str, Any]) -> None:
    """``reasoning``, ``text`` and the fields with no Chat Completions
    counterpart (dropped, reported by name: :func:`~gateway.dialects.dropped.drop`)."""
    reasoning = request.reasoning
    if reasoning is not None:
        if reasoning.effort is not None:
            chat["reasoning_effort"] = reasoning.effort
        if reasoning.summary is not None or reasoning.generate_summary is not None:
            drop("reasoning.summary")  # no reasoning items are produced
    text = request.text
    if text is not None:
        if text.verbosity is not None:
            chat["verbosity"] = text.verbosity
        fmt = text.format
        if fmt is not None and fmt.type == "json_object":
            chat["response_format"] = {"type": "json_object"}
        elif fmt is not None and fmt.type == "json_schema":
            schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.json_schema}
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            if fmt.description is not None:
                schema["description"] = fmt.description
            chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    if request.include:
        drop("include")  # only reasoning / built-in tool data, which never occur here
    if request.stream_options:
        drop("stream_options")
    if request.max_tool_calls is not None:
        drop("max_tool_calls")
    if request.prompt_cache_options is not None:
        drop("prompt_cache_options")
    if request.truncation == "auto":
        drop("truncation")


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def response_object(
    body: dict[str, Any],
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """A Response object (``"object": "response"``) echoing the request's settings."""
    tools = body.get("tools") or []
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": bool(body.get("background")),
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store") is not False,
        "temperature": body.get("temperature"),
        "text": _text_echo(body.get("text")),
        "reasoning": _reasoning_echo(body.get("reasoning")),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": tools,
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "user": body.get("user"),
    }


def _text_echo(text: object) -> dict[str, Any]:
    fmt = text.get("format") if isinstance(text, dict) else None
    echo: dict[str, Any] = {"format": fmt if isinstance(fmt, dict) else {"type": "text"}}
    if isinstance(text, dict) and text.get("verbosity") is not None:
        echo["verbosity"] = text["verbosity"]
    return echo


def _reasoning_echo(reasoning: object) -> dict[str, Any]:
    given = reasoning if isinstance(reasoning, dict) else {}
    return {"effort": given.get("effort"), "summary": None}


def response_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Chat Completions ``usage`` object as a Responses one."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def response_from_completion(
    completion: dict[str, Any], body: dict[str, Any], response_id: str | None = None
) -> dict[str, Any]:
    """A non-streaming chat completion as a Response object (values of the
    wrong type, from an upstream, are left out)."""
    choices = completion.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    choice: dict[str, Any] = first if isinstance(first, dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    output: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(message_item(new_item_id("msg"), message["content"]))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        output.append(
            function_call_item(
                new_item_id("fc"),
                str(call.get("id") or new_item_id("call")),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
            )
        )
    incomplete = incomplete_reason(choice.get("finish_reason"))
    return response_object(
        body,
        response_id=response_id or new_response_id(),
        created_at=int(time.time()),
        status="incomplete" if incomplete else "completed",
        output=output,
        usage=response_usage(completion.get("usage")),
        incomplete_reason=incomplete,
    )


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value or [])


def output_as_input(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A Response's output items as input items of a follow-up request."""
    items: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        if item.get("type") == "message":
            text = "".join(
                part.get("text", "") for part in item.get("content") or () if isinstance(part, dict)
            )
            items.append({"type": "message", "role": "assistant", "content": text})
        elif item.get("type") == "function_call":
            items.append(
                {
                    "type": "function_call",
                    "call_id": item.get("call_id"),
                    "name": item.get("name"),
                    "arguments": item.get("arguments", ""),
                }
            )
    return items
