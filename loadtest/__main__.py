"""``python -m loadtest <command> [options]``: runs
``loadtest.scenarios.<command>.main(options)``.

With no command, or with options first, it runs the end-to-end ``runner``
(so ``python -m loadtest --quick`` and ``make loadtest`` run it);
``python -m loadtest help`` (or ``--help``, ``-h``) lists the commands, one
line each from their docstrings. ``python -m loadtest <command> --help``
shows a command's options.
"""

from __future__ import annotations

import importlib
import sys

from loadtest.scenarios import COMMANDS, summary


def usage() -> str:
    """The command list: ``name  first sentence of its docstring``."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: python -m loadtest [<command>] [options]",
        "",
        "commands (python -m loadtest <command> --help for a command's options;",
        "no command, or options first: runner):",
    ]
    lines += [f"  {name:<{width}}  {summary(name)}" for name in COMMANDS]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Dispatch ``argv`` (without the program name); the exit status."""
    if argv and argv[0] in ("help", "--help", "-h"):
        print(usage())
        return 0
    command = "runner"
    if argv and not argv[0].startswith("-"):
        command, argv = argv[0], argv[1:]
        if command not in COMMANDS:
            print(f"python -m loadtest: no command {command!r}\n\n{usage()}", file=sys.stderr)
            return 2
    module = importlib.import_module(f"loadtest.scenarios.{command}")
    status = module.main(argv)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
