"""One measured phase per benchmark family: the end-to-end phase
(:mod:`.phase`), the hot path (:mod:`.hotpath`), the backpressure proof
(:mod:`.backpressure`) and fleet throughput (:mod:`.fleet`)."""
