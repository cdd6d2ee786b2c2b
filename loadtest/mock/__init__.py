"""The mock upstream: what a stream does (:mod:`.scenario`), how its frames
look (:mod:`.frames`), and the server (:mod:`.upstream`,
``python -m loadtest.mock.upstream``)."""
