"""The load-test commands, one module each: ``python -m loadtest <command>``
runs ``loadtest.scenarios.<command>.main(argv)`` (see :mod:`loadtest.__main__`).

Each module's docstring opens with one sentence of what it measures; that
sentence is the command's line in ``python -m loadtest help``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Final

COMMANDS: Final = (
    "runner",
    "hotpath",
    "relay_cpu",
    "bench",
    "headofline",
    "routing",
    "otel_cost",
    "real_model",
    "fleet",
    "auth_overhead",
    "state_burst",
    "setup_cost",
    "event_cost",
    "cancel_trace",
)
"""Every command, in the order ``make bench`` and the docs meet them
(``runner`` first: ``python -m loadtest`` alone runs it)."""

_HERE: Final = Path(__file__).resolve().parent
_PREFIX: Final = re.compile(r"^``python -m loadtest(?: \w+)?``(?: \([^)]*\))?:\s*")


def summary(command: str) -> str:
    """The first sentence of ``command``'s module docstring, without the
    ``python -m loadtest <command>`` lead-in (read from the source: no import,
    so ``help`` costs no matplotlib or gateway import)."""
    tree = ast.parse((_HERE / f"{command}.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    first = _PREFIX.sub("", first).replace("``", "")
    end = re.search(r"\.(\s|$)", first)
    first = first[: end.start() + 1] if end else first
    return first[:1].upper() + first[1:]
