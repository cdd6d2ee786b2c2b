// sluice.js: stream chat completions from Sluice in a browser (or Node 18+).
// An ES module with no dependencies and no build step; served at GET /sluice.js.
//
//   import { streamChat } from "http://127.0.0.1:8080/sluice.js";
//   const stop = new AbortController();
//   for await (const chunk of streamChat({ baseUrl: "http://127.0.0.1:8080/v1",
//       apiKey, body: { model: "sim", messages }, signal: stop.signal, resumable: true })) {
//     text += chunk.choices[0]?.delta?.content ?? "";
//   }
//
// SSE parsing follows the WHATWG HTML standard, "Server-sent events":
// events split across reads, \r\n / \n / \r line ends, multi-line data,
// comments, id. A resumable stream whose connection fails mid-way reconnects
// with Last-Event-ID (bounded retries with backoff), so the loop above sees one
// unbroken sequence of chunks.

/** A non-2xx answer or an error event; `body` is the parsed error body. */
export class SluiceError extends Error {
  constructor(message, { status = 0, body = null } = {}) {
    super(message);
    this.name = "SluiceError";
    this.status = status;
    this.body = body;
  }
}

/** Parse an SSE byte stream (a ReadableStream of Uint8Array) into events
 * `{ event, data, id }`. */
export async function* parseSSE(stream) {
  const reader = stream.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let data = [];
  let event = null;
  let id = null;
  let first = true;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return; // an incomplete event at the end is dropped (WHATWG)
      buffer += decoder.decode(value, { stream: true });
      if (first && buffer.length > 0) {
        if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
        first = false;
      }
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        // A trailing \r may be the first half of \r\n: wait for the next read.
        if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1)) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (data.length) yield { event, data: data.join("\n"), id };
          data = [];
          event = null;
          continue;
        }
        if (line.startsWith(":")) continue; // a comment (heartbeats)
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "data") data.push(val);
        else if (field === "event") event = val;
        else if (field === "id" && !val.includes("\0")) id = val;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const message = body?.error?.message ?? `HTTP ${response.status}`;
  return new SluiceError(message, { status: response.status, body });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Stream one chat completion; yields parsed `chat.completion.chunk` objects.
 * Throws SluiceError for a non-2xx answer or an error event; stops (throws the
 * abort reason) when `signal` aborts. */
export async function* streamChat({
  baseUrl, apiKey, body, signal, resumable = false, maxRetries = 5, fetch = globalThis.fetch,
}) {
  const auth = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const headers = { "Content-Type": "application/json", ...auth };
  if (resumable) headers["Sluice-Resumable"] = "true";
  let response = await fetch(`${baseUrl}/chat/completions`, {
    method: "POST", headers, body: JSON.stringify({ ...body, stream: true }), signal,
  });
  if (!response.ok) throw await errorOf(response);
  const streamId = response.headers.get("Sluice-Stream-Id");
  let lastId = "0";
  for (let retries = 0; ; ) {
    try {
      for await (const event of parseSSE(response.body)) {
        if (event.id !== null) lastId = event.id;
        if (event.data === "[DONE]") return;
        const chunk = JSON.parse(event.data);
        if (chunk.error) throw new SluiceError(chunk.error.message, { status: 200, body: chunk });
        retries = 0;
        yield chunk;
      }
      if (!streamId) throw new SluiceError("The stream ended before [DONE]");
    } catch (err) {
      if (signal?.aborted || err instanceof SluiceError || !streamId || retries >= maxRetries) {
        throw err;
      }
    }
    retries += 1; // the connection failed mid-stream: resume after the last event
    await sleep(Math.min(200 * 2 ** (retries - 1), 5000), signal);
    response = await fetch(`${baseUrl}/streams/${streamId}`, {
      headers: { ...auth, "Last-Event-ID": lastId }, signal,
    });
    if (!response.ok) throw await errorOf(response);
  }
}
