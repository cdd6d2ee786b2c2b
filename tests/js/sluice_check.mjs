// Drives sluice.js (a copy of what GET /sluice.js served) for tests/test_sluice_js.py.
// Usage: node sluice_check.mjs <module path> <scenario> <baseUrl> [json args]
const [, , modulePath, scenario, baseUrl, extra] = process.argv;
const { streamChat, parseSSE, SluiceError } = await import(modulePath);
const args = extra ? JSON.parse(extra) : {};
const out = {};
try {
  if (scenario === "parse") {
    // The WHATWG cases, split at every byte boundary.
    const wire = args.wire;
    const bytes = new TextEncoder().encode(wire);
    const results = [];
    for (let cut = 0; cut <= bytes.length; cut++) {
      const stream = new ReadableStream({
        start(c) { c.enqueue(bytes.slice(0, cut)); c.enqueue(bytes.slice(cut)); c.close(); },
      });
      const events = [];
      for await (const e of parseSSE(stream)) events.push(e);
      results.push(JSON.stringify(events));
    }
    out.distinct = [...new Set(results)];
    out.events = JSON.parse(results[0]);
  } else {
    let text = "";
    const stop = new AbortController();
    let n = 0;
    for await (const chunk of streamChat({
      baseUrl, apiKey: args.apiKey, body: args.body, signal: stop.signal,
      resumable: !!args.resumable,
    })) {
      text += chunk.choices?.[0]?.delta?.content ?? "";
      n += 1;
      if (args.stopAfter && n >= args.stopAfter) stop.abort();
    }
    out.text = text;
  }
} catch (err) {
  out.error = { name: err?.name, message: String(err?.message ?? err), status: err?.status,
                isSluice: err instanceof SluiceError };
}
console.log(JSON.stringify(out));
