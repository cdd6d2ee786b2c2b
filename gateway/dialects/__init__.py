"""Client dialects: request validation and the SSE encoding of each API."""
