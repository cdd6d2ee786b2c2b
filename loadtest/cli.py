"""The command-line pieces every ``python -m loadtest.*`` command shares.

One parser shape (``prog``, the module docstring's first paragraph as the
description, every default shown in ``--help``) and the options several
commands take with one meaning: where a server listens (``--host``,
``--port``), which gateway runs (``--gateway-src``, ``--gateway-buffer-bytes``)
and where the results go (``--out``). Every option has help text.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""Where every command writes its results: ``loadtest/results/<kind>-<time>/``."""


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of ``python -m <prog>``: ``doc``'s first paragraph (the
    module docstring) describes it, ``--help`` shows every default."""
    first = (doc or "").split("\n\n")[0].replace("``", "").strip().rstrip(":")
    return argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=first,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_listen(p: argparse.ArgumentParser, port: int) -> None:
    """``--host`` and ``--port``: where this server listens."""
    p.add_argument("--host", default=HOST, help="address to listen on")
    p.add_argument("--port", type=int, default=port, help="port to listen on")


def add_gateway(p: argparse.ArgumentParser, *, buffer: bool = True) -> None:
    """``--gateway-src`` (which gateway package runs) and, with ``buffer``,
    ``--gateway-buffer-bytes`` (its per-connection bound)."""
    if buffer:
        p.add_argument(
            "--gateway-buffer-bytes",
            type=int,
            default=65536,
            help="the gateway's per-connection bound ([stream] downstream_buffer_bytes), bytes",
        )
    p.add_argument(
        "--gateway-src",
        type=Path,
        default=None,
        help="directory holding the gateway package to run (None: this checkout)",
    )


def add_out(p: argparse.ArgumentParser, kind: str) -> None:
    """``--out``: the results directory (default ``loadtest/results/<kind>-<time>``)."""
    where = f"{kind}-<timestamp>" if kind else "<timestamp>"
    p.add_argument(
        "--out", type=Path, default=None, help=f"results directory (None: loadtest/results/{where})"
    )


def results_dir(out: Path | None, kind: str) -> Path:
    """``out`` (``--out``), or ``loadtest/results/<kind>-<time>`` (``<time>``
    alone when ``kind`` is empty), made if missing, absolute."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = (out or RESULTS_DIR / (f"{kind}-{stamp}" if kind else stamp)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Quick(argparse.Action):
    """``--quick``: the options in ``small`` take those values, except the
    ones given on the command line before it (a later one still wins)."""

    def __init__(self, option_strings: list[str], dest: str, small: dict[str, Any], **kw: Any):
        self.small = small
        super().__init__(option_strings, dest, nargs=0, default=False, **kw)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)
        for name, value in self.small.items():
            if getattr(namespace, name) == parser.get_default(name):
                setattr(namespace, name, value)


def add_quick(p: argparse.ArgumentParser, **small: Any) -> None:
    """``--quick``: a run of seconds that still measures every figure (a
    smoke run, not a measurement to quote); ``small`` maps option names
    (``dest``) to their quick values, listed in the help."""
    sizes = ", ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in small.items()
    )
    p.add_argument(
        "--quick",
        action=_Quick,
        small=small,
        help=f"seconds-long run, every figure still measured (not one to quote): {sizes}",
    )
