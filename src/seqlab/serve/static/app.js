// The seqlab chat page: picks a model, streams replies from /v1/chat/completions (SSE over fetch),
// and stops them with an AbortController. No build step, no third-party code.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];     // the conversation sent with each request: {role, content}
let controller = null;       // the AbortController of the reply being streamed

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = localStorage.getItem("seqlab-api-key");
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text) { $("status").textContent = text; }

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  div.textContent = text;
  $("messages").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function errorText(response) {
  try { return (await response.json()).error.message; } catch { return `HTTP ${response.status}`; }
}

function needKey(message) {
  $("key-field").hidden = false;
  $("api-key").focus();
  setStatus(message + " — enter the server's API key");
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) return needKey(await errorText(response));
  if (!response.ok) return setStatus(await errorText(response));
  const select = $("model");
  select.replaceChildren();
  for (const model of (await response.json()).data) {
    const option = new Option(`${model.id} (${model.kind})`, model.id);
    select.append(option);
  }
  setStatus(select.options.length ? "" : "this server has no models");
}

// Yield each SSE `data:` payload of a streamed response, as text ("[DONE]" included).
async function* sseData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");   // stream mode: a character split across chunks stays whole
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

// Show `text` in `bubble` at the next frame: a fast model sends far more pieces than a screen shows.
let shown = null;            // [bubble, text] for the next frame
function show(bubble, text) {
  if (shown === null) requestAnimationFrame(flush);
  shown = [bubble, text];
}

// Show what is pending now (at the frame, or at once when a reply ends: its last text must not wait).
function flush() {
  if (shown === null) return;
  const [target, latest] = shown;
  shown = null;
  target.textContent = latest;
  target.scrollIntoView({ block: "end" });
}

function number(id) {
  const value = parseFloat($(id).value);
  return Number.isFinite(value) ? value : undefined;
}

async function send(text) {
  conversation.push({ role: "user", content: text });
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  bubble.classList.add("streaming");
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("…");
  let reply = "";
  let ending = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({ model: $("model").value, messages: conversation, stream: true,
                             temperature: number("temperature"), top_p: number("top-p") }),
    });
    if (response.status === 401) { needKey(await errorText(response)); throw new Error("unauthorized"); }
    if (!response.ok) throw new Error(await errorText(response));
    for await (const data of sseData(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) {
        if (choice.delta.content) { reply += choice.delta.content; show(bubble, reply); }
        if (choice.finish_reason) ending = choice.finish_reason;
      }
    }
    setStatus(ending === "length" ? "the reply reached the length cap" : "");
  } catch (error) {
    if (error.name === "AbortError") {
      setStatus("stopped");
    } else {
      bubble.classList.add("error");
      bubble.textContent = reply || error.message;
      setStatus(error.message);
    }
  } finally {
    if (reply) { show(bubble, reply); flush(); }   // the whole reply is on screen before it is marked done
    bubble.classList.remove("streaming");
    if (reply) conversation.push({ role: "assistant", content: reply });
    else conversation.pop();      // nothing came back: the turn is forgotten, so the next one starts clean
    controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});

$("input").addEventListener("keydown", (event) => {
  // Enter sends; not while an input method (Chinese, Japanese...) is composing
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

$("stop").addEventListener("click", () => controller && controller.abort());

$("reset").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation.length = 0;
  $("messages").replaceChildren();
  setStatus("a new conversation");
});

$("api-key").addEventListener("change", () => {
  localStorage.setItem("seqlab-api-key", $("api-key").value.trim());
  loadModels();
});

loadModels();
