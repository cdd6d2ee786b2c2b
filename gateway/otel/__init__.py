"""OpenTelemetry GenAI telemetry: metrics and traces over OTLP (``[otel]``).

- :mod:`.config`: the ``[otel]`` section;
- :mod:`.attributes`: the GenAI semantic-convention names, provider names,
  each model's upstream attributes (the spec version followed is cited there);
- :mod:`.metrics`: the GenAI instruments (types, units, bucket boundaries);
- :mod:`.tracing`: one request's spans and metrics, built at its end;
- :mod:`.sdk`: the SDK's providers and exporters (imported only when enabled);
- :mod:`.hooks`: what the gateway calls; free when telemetry is off.
"""
