"""Pydantic validation errors of the config file, said in the file's own terms.

:func:`describe` turns a ``ValidationError`` into one line per mistake, each
starting with the dotted path of the key in the TOML file
(``models[0].itl_ms: ...``):

- an unknown key says the closest valid key (``did you mean 'itl_ms'?``,
  ``difflib.get_close_matches``) or lists the valid ones;
- an unknown or missing ``provider`` lists the providers (and how to reach an
  OpenAI-compatible server such as Ollama or vLLM);
- pydantic's follow-on errors are dropped: a ``too_short`` on a list whose
  items themselves failed, and a ``missing`` key that an unknown key was
  probably meant to be;
- cross-field checks raise :data:`CROSS_CHECK` errors whose context carries
  ``problems``: ``(path, message)`` pairs reported as they are.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

CROSS_CHECK = "config_cross_check"
"""Error type of a cross-field check; ``ctx["problems"]`` is ``[(path, message)]``."""

OPENAI_COMPATIBLE_HINT = (
    'use provider = "openai" with base_url for Ollama, vLLM and other OpenAI-compatible servers'
)


def _path(loc: Sequence[int | str], tags: Mapping[str, type[BaseModel]]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in tags:
            continue  # the discriminator tag pydantic inserts, not a key
        else:
            path += f".{part}" if path else part
    return path or "<root>"


def _section(
    loc: Sequence[int | str], root: type[BaseModel], tags: Mapping[str, type[BaseModel]]
) -> type[BaseModel] | None:
    """The model class of the table at ``loc`` (None when it is not a table)."""
    cls: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        if part in tags:
            cls = tags[part]
            continue
        field = cls.model_fields.get(part) if cls is not None else None
        ann = field.annotation if field is not None else None
        cls = _model_in(ann)
    return cls


def _model_in(ann: Any) -> type[BaseModel] | None:
    """The model class an annotation holds: ``X``, ``X | None``, ``tuple[X, ...]``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _suggest(key: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(key, choices, n=1)
    return close[0] if close else None


def _unknown_key(
    e: ErrorDetails, root: type[BaseModel], tags: Mapping[str, type[BaseModel]]
) -> tuple[str, str | None]:
    """(message, the key it probably meant) for an ``extra_forbidden`` error."""
    *where, key = e["loc"]
    cls = _section(where, root, tags)
    fields = sorted(cls.model_fields) if cls is not None else []
    meant = _suggest(str(key), fields)
    if meant is not None:
        return f"unknown key; did you mean {meant!r}?", meant
    hint = f" (valid keys: {', '.join(fields)})" if fields else ""
    return f"unknown key{hint}", None


def _provider_error(e: ErrorDetails, providers: Sequence[str]) -> tuple[str, str]:
    """(key path suffix, message) for a missing or unknown ``provider``."""
    expected = ", ".join(providers)
    given = e["input"] if isinstance(e["input"], dict) else {}
    if e["type"] == "union_tag_invalid":
        tag = (e.get("ctx") or {}).get("tag")
        return (
            ".provider",
            f"unknown provider {tag!r}; expected one of: {expected} ({OPENAI_COMPATIBLE_HINT})",
        )
    typo = next((k for k in given if _suggest(str(k), ["provider"])), None)
    if typo is not None:
        return f".{typo}", "unknown key; did you mean 'provider'?"
    return ".provider", f"required; expected one of: {expected}"


def _follow_on(e: ErrorDetails) -> bool:
    """pydantic counts only the valid items of a tuple: when an item failed,
    ``too_short`` repeats that failure, it is not a mistake of its own."""
    if e["type"] != "too_short" or not isinstance(e["input"], (list, tuple)):
        return False
    return len(e["input"]) >= int((e.get("ctx") or {}).get("min_length", 0))


def describe(
    err: ValidationError,
    root: type[BaseModel],
    tags: Mapping[str, type[BaseModel]],
) -> list[str]:
    """One ``path: message`` line per mistake in ``err`` (see the module docstring).

    ``root`` is the validated model; ``tags`` maps each discriminator value of
    a tagged union (``provider``) to its model class, in the order to list them.
    """
    lines: list[tuple[str, str]] = []
    meant: set[str] = set()
    errors = [e for e in err.errors() if not _follow_on(e)]
    for e in errors:
        loc = e["loc"]
        if e["type"] == CROSS_CHECK:
            problems: Any = (e.get("ctx") or {}).get("problems", ())
            lines.extend((str(path), str(message)) for path, message in problems)
        elif e["type"] == "extra_forbidden":
            message, key = _unknown_key(e, root, tags)
            if key is not None:
                meant.add(_path([*loc[:-1], key], tags))
            lines.append((_path(loc, tags), message))
        elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            suffix, message = _provider_error(e, list(tags))
            lines.append((_path(loc, tags) + suffix, message))
        else:
            lines.append((_path(loc, tags), e["msg"].removeprefix("Value error, ")))
    missing = {
        _path(e["loc"], tags) for e in errors if e["type"] == "missing"
    }  # a missing key that a misspelt one stood for is the same mistake
    return [
        f"{path}: {message}"
        for path, message in lines
        if not (path in missing and path in meant and message == "Field required")
    ]
