// The Node clients people point at Sluice, run with `node --test` against a
// running gateway (tests/test_clients_js.py starts one and runs this file).
//
// Environment:
//   SLUICE_BASE_URL  the gateway's origin, e.g. http://127.0.0.1:8080 (required)
//   SLUICE_MODEL     the model to ask (default "sim")
//   SLUICE_TEXT      the exact text every client must receive; unset: any
//                    non-empty text (a real model)
//   SLUICE_TOOLS     "0" skips the tool-call tests (a model that may not call)
//   SLUICE_FORCE_TOOL "1" names the tool in tool_choice (a real model behind
//                    llama-cpp-python's server calls a tool only when
//                    tool_choice names it: a grammar from its schema; it
//                    ignores "required"), and a round trip's answer is then
//                    only checked to be non-empty text
//
// Every request is greedy (temperature 0), so against a real model
// SLUICE_TEXT can be the server's own answer to "hi".
// Each client streams text; where the SDK has tools, it also streams a tool
// call (the simulator calls a declared function when the last user message
// says `call <name>`) and, for the SDKs that run tools, the round trip.

import assert from "node:assert/strict";
import { test } from "node:test";

import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import Anthropic from "@anthropic-ai/sdk";
import { jsonSchema, stepCountIs, streamText, tool } from "ai";
import OpenAI from "openai";

const ORIGIN = process.env.SLUICE_BASE_URL;
assert.ok(ORIGIN, "SLUICE_BASE_URL is required");
const MODEL = process.env.SLUICE_MODEL || "sim";
const TEXT = process.env.SLUICE_TEXT;
const TOOLS = process.env.SLUICE_TOOLS !== "0";
const FORCE = process.env.SLUICE_FORCE_TOOL === "1";
const KEY = "sk-unused";

const WEATHER = {
  name: "get_weather",
  description: "The weather in a city.",
  parameters: {
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  },
};
const ASK_TOOL = `call ${WEATHER.name} for Paris`;

function assertText(text) {
  if (TEXT === undefined) assert.ok(text.length > 0, "no text streamed");
  else assert.equal(text, TEXT);
}

// A tool round trip's answer: a real model's is unknown.
function assertAnswer(text) {
  if (FORCE) assert.ok(text.length > 0, "no text streamed");
  else assertText(text);
}

function assertCity(args) {
  const parsed = typeof args === "string" ? JSON.parse(args) : args;
  assert.equal(typeof parsed.city, "string");
  if (!FORCE) assert.equal(parsed.city, "sim-city");
}

// --- openai ---------------------------------------------------------------

const openai = new OpenAI({ baseURL: `${ORIGIN}/v1`, apiKey: KEY });

test("openai: chat.completions streams text", async () => {
  const stream = await openai.chat.completions.create({
    model: MODEL,
    stream: true,
    temperature: 0,
    messages: [{ role: "user", content: "hi" }],
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assertText(text);
});

test("openai: chat.completions streams a tool call", { skip: !TOOLS }, async () => {
  const runner = openai.chat.completions.stream({
    model: MODEL,
    messages: [{ role: "user", content: ASK_TOOL }],
    tools: [{ type: "function", function: WEATHER }],
    ...(FORCE && { tool_choice: { type: "function", function: { name: WEATHER.name } } }),
  });
  const message = await runner.finalMessage();
  // llama-cpp-python's server streams a forced call twice in each chunk, as
  // `tool_calls` and as the deprecated `function_call`, and this SDK then
  // reports only `function_call` (straight from the server too): Sluice
  // relays Chat Completions chunks as they come.
  const calls =
    FORCE && !message.tool_calls && message.function_call
      ? [{ function: message.function_call }]
      : message.tool_calls;
  assert.equal(calls.length, 1);
  assert.equal(calls[0].function.name, WEATHER.name);
  assertCity(calls[0].function.arguments);
});

test("openai: responses streams text", async () => {
  const stream = await openai.responses.create({
    model: MODEL,
    input: "hi",
    stream: true,
    temperature: 0,
  });
  let text = "";
  let completed = null;
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") completed = event.response;
  }
  assertText(text);
  assert.equal(completed?.status, "completed");
});

test("openai: responses streams a function call", { skip: !TOOLS }, async () => {
  const stream = openai.responses.stream({
    model: MODEL,
    input: ASK_TOOL,
    tools: [{ type: "function", ...WEATHER, strict: true }],
    ...(FORCE && { tool_choice: { type: "function", name: WEATHER.name } }),
  });
  const response = await stream.finalResponse();
  const calls = response.output.filter((item) => item.type === "function_call");
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, WEATHER.name);
  assertCity(calls[0].arguments);
});

// --- Vercel AI SDK --------------------------------------------------------

const weatherTool = tool({
  description: WEATHER.description,
  inputSchema: jsonSchema(WEATHER.parameters),
  execute: async ({ city }) => `sunny in ${city}`,
});

async function aiText(model) {
  const result = streamText({ model, prompt: "hi", temperature: 0 });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  return text;
}

async function aiToolRoundTrip(model) {
  const result = streamText({
    model,
    prompt: ASK_TOOL,
    tools: { [WEATHER.name]: weatherTool },
    stopWhen: stepCountIs(2),
    temperature: 0,
    // Forced: the first step names the tool; the answer step may not.
    prepareStep: ({ stepNumber }) =>
      FORCE && stepNumber === 0 ? { toolChoice: { type: "tool", toolName: WEATHER.name } } : {},
  });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  const steps = await result.steps;
  return { text, steps };
}

function assertRoundTrip({ text, steps }) {
  assert.equal(steps.length, 2, "a tool step, then a text step");
  assert.equal(steps[0].toolCalls.length, 1);
  assert.equal(steps[0].toolCalls[0].toolName, WEATHER.name);
  assertCity(steps[0].toolCalls[0].input);
  assert.equal(steps[0].toolResults.length, 1);
  assertAnswer(text);
}

// The default provider: openai(model) speaks the Responses API.
const aiOpenAI = createOpenAI({ baseURL: `${ORIGIN}/v1`, apiKey: KEY });

test("ai-sdk openai (default, Responses): streams text", async () => {
  assertText(await aiText(aiOpenAI(MODEL)));
});

test("ai-sdk openai (default, Responses): tool round trip", { skip: !TOOLS }, async () => {
  assertRoundTrip(await aiToolRoundTrip(aiOpenAI(MODEL)));
});

test("ai-sdk openai .chat(): streams text", async () => {
  assertText(await aiText(aiOpenAI.chat(MODEL)));
});

const aiAnthropic = createAnthropic({ baseURL: `${ORIGIN}/v1`, apiKey: KEY });

test("ai-sdk anthropic: streams text", async () => {
  assertText(await aiText(aiAnthropic(MODEL)));
});

test("ai-sdk anthropic: tool round trip", { skip: !TOOLS }, async () => {
  assertRoundTrip(await aiToolRoundTrip(aiAnthropic(MODEL)));
});

// --- @anthropic-ai/sdk ----------------------------------------------------

const anthropic = new Anthropic({ baseURL: ORIGIN, apiKey: KEY });

test("@anthropic-ai/sdk: messages.stream streams text", async () => {
  const stream = anthropic.messages.stream({
    model: MODEL,
    max_tokens: 256,
    temperature: 0,
    messages: [{ role: "user", content: "hi" }],
  });
  let text = "";
  stream.on("text", (delta) => {
    text += delta;
  });
  const message = await stream.finalMessage();
  assertText(text);
  assert.equal(message.stop_reason, "end_turn");
  assert.ok(message.usage.output_tokens > 0);
});

test("@anthropic-ai/sdk: messages.stream streams a tool_use", { skip: !TOOLS }, async () => {
  const stream = anthropic.messages.stream({
    model: MODEL,
    max_tokens: 256,
    messages: [{ role: "user", content: ASK_TOOL }],
    tools: [{ name: WEATHER.name, description: WEATHER.description, input_schema: WEATHER.parameters }],
    ...(FORCE && { tool_choice: { type: "tool", name: WEATHER.name } }),
  });
  const message = await stream.finalMessage();
  const uses = message.content.filter((block) => block.type === "tool_use");
  assert.equal(uses.length, 1);
  assert.equal(uses[0].name, WEATHER.name);
  assertCity(uses[0].input);
  assert.equal(message.stop_reason, "tool_use");
});
