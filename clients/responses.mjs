// openai-node against GhostGPT's /v1/responses: create, stream, and a continuation.
// Usage: node responses.mjs <base_url> <api_key> <model>; prints one JSON object.
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const created = await client.responses.create({ model, input: "Weather?", instructions: "Be brief." });
const kinds = [];
let streamed = "";
const stream = await client.responses.create({ model, input: "Weather again?", stream: true });
for await (const event of stream) {
  kinds.push(event.type);
  if (event.type === "response.output_text.delta") streamed += event.delta;
}
const helper = client.responses.stream({ model, input: "Once more", previous_response_id: created.id });
const final = await helper.finalResponse();
console.log(
  JSON.stringify({
    id: created.id,
    status: created.status,
    output_text: created.output_text,
    kinds,
    streamed,
    final_status: final.status,
    final_text: final.output_text,
    previous: final.previous_response_id,
  }),
);
