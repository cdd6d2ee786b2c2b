// The two Node clients users reach for, against Sluice's Responses API.
//   make run                      # in another shell
//   npm install && npm run check  # in examples/node
import OpenAI from "openai";
import { createOpenAI } from "@ai-sdk/openai";
import { streamText } from "ai";
const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: "unused" });
const stream = await client.responses.create({ model: "sim", input: "hi", stream: true });
let text = "";
for await (const event of stream) if (event.type === "response.output_text.delta") text += event.delta;
console.log("openai node responses.create:", JSON.stringify(text));
const provider = createOpenAI({ baseURL, apiKey: "unused" });
const result = streamText({ model: provider("sim"), prompt: "hi" });
let vtext = "";
for await (const part of result.textStream) vtext += part;
console.log("vercel ai sdk streamText:", JSON.stringify(vtext), "finish:", await result.finishReason);
