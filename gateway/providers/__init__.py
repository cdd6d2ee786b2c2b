"""Upstream providers: each turns a request body into a stream of chunks."""
