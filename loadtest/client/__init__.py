"""The load side: an SSE client that times every event (:mod:`.sse`), client
behaviours and targets (:mod:`.profiles`), closed- and open-loop load
(:mod:`.driver`), and process sampling (:mod:`.sampler`)."""
