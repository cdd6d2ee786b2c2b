"""``python -m loadtest``: see :mod:`loadtest.runner`."""

from loadtest.runner import main

main()
