// playground.js: the page GET /playground (playground.html), on /sluice.js.
//
// Send streams one chat completion from the chosen model; Stop aborts it
// (and cancels a resumable stream's generation with DELETE /v1/streams/{id}).
// The conversation is kept: each Send sends the system prompt (if any), every
// earlier turn (the question and the answer as it was shown, a stopped one
// included; a failed one is not kept) and the new prompt, with the
// temperature and max tokens when set. Clear starts a new conversation.
// Tokens are appended to the answer at most once per animation frame, however
// fast they arrive; the figures of the current stream are updated with them:
// TTFT (Send -> first content), tokens/s and inter-token latency (p50) after
// the first token, and the token count (content chunks received).
// The API key stays in this tab (sessionStorage) and is sent only to this origin.

import { SluiceError, streamChat } from "/sluice.js";

const $ = (id) => document.getElementById(id);
const form = $("form");
const model = $("model");
const key = $("key");
const prompt = $("prompt");
const system = $("system");
const temperature = $("temperature");
const maxTokens = $("max-tokens");
const transcript = $("transcript");
const asked = $("asked");
const clear = $("clear");
const resumable = $("resumable");
const send = $("send");
const stop = $("stop");
const answer = $("answer");
const status = $("status");
const error = $("error");
const figures = { ttft: $("ttft"), tps: $("tps"), itl: $("itl"), tokens: $("tokens") };

const KEY_ITEM = "sluice.playground.key";
const API = `${location.origin}/v1`;

/** The stream being shown: timings in ms (performance.now()), gaps between
 * content chunks, text not yet rendered, and the Text node it goes to. */
let run = null;
let frame = 0;
/** The conversation so far: {role, content} messages, oldest first. */
let history = [];
/** The turn on screen (#asked, #answer) once it ended and is kept. */
let shown = null;

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: the key lives in the field only
  }
}

function authHeaders() {
  const apiKey = key.value.trim();
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

function showError(err) {
  if (!err) {
    error.textContent = "";
  } else if (err instanceof SluiceError) {
    error.textContent = err.status && err.status !== 200
      ? `${err.message} (HTTP ${err.status})` : err.message;
  } else {
    error.textContent = `Network error: ${err.message}`;
  }
}

async function loadModels() {
  showError(null);
  try {
    const response = await fetch(`${API}/models`, { headers: authHeaders() });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw new SluiceError(body?.error?.message ?? `HTTP ${response.status}`,
        { status: response.status, body });
    }
    const chosen = model.value;
    model.replaceChildren(...body.data.map((m) => new Option(m.id, m.id)));
    if (body.data.some((m) => m.id === chosen)) model.value = chosen;
    status.textContent = `${body.data.length} model(s). Ready.`;
  } catch (err) {
    status.textContent = "Could not list the models.";
    showError(err);
  }
}

function median(values) {
  const sorted = Float64Array.from(values).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Render what arrived since the last frame: one DOM text append, the figures. */
function render() {
  frame = 0;
  if (!run) return;
  if (run.pending) {
    run.node.appendData(run.pending);
    run.pending = "";
  }
  if (run.count > 0) figures.ttft.textContent = (run.first - run.start).toFixed(0);
  if (run.count > 1) {
    const span = (run.last - run.first) / 1000;
    figures.tps.textContent = span > 0 ? ((run.count - 1) / span).toFixed(1) : "–";
    figures.itl.textContent = median(run.gaps).toFixed(1);
  }
  figures.tokens.textContent = String(run.count);
}

function scheduleRender() {
  if (!frame) frame = requestAnimationFrame(render);
}

function onContent(text) {
  const now = performance.now();
  if (run.count === 0) run.first = now;
  else run.gaps.push(now - run.last);
  run.last = now;
  run.count += 1;
  run.pending += text;
  scheduleRender();
}

function bubble(role, text) {
  const item = document.createElement("li");
  item.className = role;
  item.textContent = text;
  return item;
}

/** The turn on screen moves into the transcript (it is already in history). */
function archiveShown() {
  if (!shown) return;
  transcript.append(bubble("user", shown.question), bubble("assistant", shown.answer));
  transcript.scrollTop = transcript.scrollHeight;
  shown = null;
}

/** The request body: the conversation, the new question, the settings set. */
function requestBody(question) {
  const messages = [...history, { role: "user", content: question }];
  if (system.value.trim()) messages.unshift({ role: "system", content: system.value });
  const body = { model: model.value, messages };
  if (temperature.value !== "") body.temperature = Number(temperature.value);
  if (maxTokens.value !== "") body.max_tokens = Number(maxTokens.value);
  return body;
}

function clearConversation() {
  if (run) return;
  history = [];
  shown = null;
  transcript.replaceChildren();
  asked.textContent = "";
  answer.replaceChildren();
  showError(null);
  status.textContent = "New conversation.";
  prompt.focus();
}

async function start(event) {
  event.preventDefault();
  if (run || !model.value) return;
  archiveShown();
  const question = prompt.value;
  const body = requestBody(question);
  asked.textContent = question;
  const current = run = {
    controller: new AbortController(), streamId: null, start: performance.now(),
    first: 0, last: 0, count: 0, gaps: [], pending: "", node: document.createTextNode(""),
  };
  answer.replaceChildren(current.node);
  answer.setAttribute("aria-busy", "true");
  for (const [name, el] of Object.entries(figures)) el.textContent = name === "tokens" ? "0" : "–";
  showError(null);
  status.textContent = "Streaming…";
  send.disabled = true;
  stop.disabled = false;
  clear.disabled = true;
  let kept = false;
  // Keep the stream id (resumable streams) so Stop can cancel the generation.
  const tracking = (url, init) => fetch(url, init).then((response) => {
    current.streamId = response.headers.get("Sluice-Stream-Id") ?? current.streamId;
    return response;
  });
  try {
    for await (const chunk of streamChat({
      baseUrl: API, apiKey: key.value.trim() || undefined, fetch: tracking,
      body,
      signal: current.controller.signal, resumable: resumable.checked,
    })) {
      const content = chunk.choices?.[0]?.delta?.content;
      if (content) onContent(content);
    }
    status.textContent = `Done: ${current.count} tokens.`;
    kept = true;
    prompt.value = "";
  } catch (err) {
    if (current.controller.signal.aborted) {
      status.textContent = `Stopped after ${current.count} tokens.`;
      kept = true;
    } else {
      status.textContent = "Failed.";
      showError(err);
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    render(); // the last tokens, even if no frame came (a hidden tab)
    run = null;
    if (kept) {
      const text = current.node.data;
      history.push({ role: "user", content: question }, { role: "assistant", content: text });
      shown = { question, answer: text };
    }
    answer.setAttribute("aria-busy", "false");
    send.disabled = false;
    stop.disabled = true;
    clear.disabled = false;
  }
}

function halt() {
  if (!run || run.controller.signal.aborted) return;
  run.controller.abort();
  if (run.streamId) {
    // A resumable stream's generation outlives its connection: cancel it too.
    fetch(`${API}/streams/${encodeURIComponent(run.streamId)}`, {
      method: "DELETE", headers: authHeaders(),
    }).catch(() => {});
  }
}

key.value = storage()?.getItem(KEY_ITEM) ?? "";
key.addEventListener("change", () => {
  const apiKey = key.value.trim();
  if (apiKey) storage()?.setItem(KEY_ITEM, apiKey);
  else storage()?.removeItem(KEY_ITEM);
  loadModels();
});
form.addEventListener("submit", start);
stop.addEventListener("click", halt);
clear.addEventListener("click", clearConversation);
prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") halt();
});
loadModels();
