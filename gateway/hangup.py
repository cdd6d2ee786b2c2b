"""SIGHUP means "re-read ``[auth]``" and must never kill a Sluice process.

The default action of SIGHUP terminates a process, and the reload handler
(:func:`gateway.auth.quotas_ctx`) exists only once the app has started. So a
process holds SIGHUP *blocked* from its first line of ``main`` until that
handler is installed (:func:`hold`, then :func:`release` from an
``on_startup`` hook): a SIGHUP sent meanwhile stays pending and is delivered
to the handler once it is there, so it is neither fatal nor lost. The mask is
inherited across ``fork`` and ``exec`` (POSIX ``sigprocmask``), so worker
processes spawned while it is held start with SIGHUP blocked too, before
their interpreter has run a line. A process with no config file to re-read
ignores SIGHUP (:func:`release` with no handler installed), and so does one
whose handler was removed at shutdown (:func:`ignore`).
"""

from __future__ import annotations

import signal

_HUP = {signal.SIGHUP}


def hold() -> None:
    """Block SIGHUP in this thread (and whatever it forks or execs from now)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _HUP)


def release(handled: bool) -> None:
    """Unblock SIGHUP; a pending one is delivered now. ``handled``: a handler
    is installed (else SIGHUP is ignored from here on)."""
    if not handled:
        ignore()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HUP)


def ignore() -> None:
    """SIGHUP does nothing (asyncio's ``remove_signal_handler`` restores the
    fatal default; call this after it)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
