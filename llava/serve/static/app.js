// The page: pick or upload a video, then chat about it. The whole conversation is sent with every question (the
// video in the first user turn); the server decodes the video once and keeps its features for the next questions.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;
let videoUrl = null;
let messages = [];

function headers(extra = {}) {
  const key = $("key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

async function loadVideos() {
  try {
    model = (await call("/v1/models")).data[0].id;
    const list = (await call("/videos")).data;
    const select = $("videos");
    select.length = 1;
    for (const video of list) select.add(new Option(video.name, video.url));
    if (videoUrl) select.value = videoUrl;
    setStatus(`${list.length} video(s) on the server; model ${model}`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function startConversation(url, name) {
  videoUrl = url;
  messages = [];
  $("chat").replaceChildren();
  $("question").disabled = $("send").disabled = !url;
  if (url) setStatus(`asking about ${name}`);
}

function addTurn(role, text) {
  const turn = document.createElement("div");
  turn.className = `turn ${role}`;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  turn.append(body);
  $("chat").append(turn);
  return turn;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// The keyframe timeline: CLIP relevance of every sampled frame over the video, keyframes in red (hover: their time).
function timeline(report) {
  const width = 800, height = 90, left = 30, right = 10, top = 8, bottom = 22;
  const duration = Math.max(report.duration_seconds, 1e-6);
  const low = Math.min(...report.relevance), high = Math.max(...report.relevance);
  const x = (seconds) => left + (width - left - right) * seconds / duration;
  const y = (r) => top + (height - top - bottom) * (high > low ? (high - r) / (high - low) : 0.5);
  const figure = svg("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  figure.append(svg("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }));
  const points = report.sampled_seconds.map((s, i) => `${x(s).toFixed(1)},${y(report.relevance[i]).toFixed(1)}`);
  figure.append(svg("polyline", { class: "curve", points: points.join(" ") }));
  for (const keyframe of report.keyframes) {
    const cx = x(keyframe.seconds), cy = y(report.relevance[keyframe.frame]);
    figure.append(svg("line", { class: "keyline", x1: cx, x2: cx, y1: cy, y2: height - bottom }));
    const dot = svg("circle", { class: "keyframe", cx, cy, r: 4 });
    dot.append(svg("title", {}, `keyframe ${keyframe.timestamp} (frame ${keyframe.frame})`));
    figure.append(dot);
  }
  figure.append(svg("text", { x: left, y: height - 6 }, "00:00:00"));
  figure.append(svg("text", { x: width - right - 50, y: height - 6 }, formatTime(duration)));
  return figure;
}

function formatTime(seconds) {
  const total = Math.round(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(Math.floor(total / 3600))}:${pad(Math.floor(total / 60) % 60)}:${pad(total % 60)}`;
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || !videoUrl) return;
  const parts = [{ type: "text", text: question }];
  const turn = { role: "user", content: messages.length ? parts : [{ type: "video_url", video_url: { url: videoUrl } }, ...parts] };
  addTurn("user", question);
  $("question").value = "";
  $("question").disabled = $("send").disabled = true;
  const request = { model, messages: [...messages, turn], max_tokens: parseInt($("tokens").value, 10) || 128 };
  const frames = parseInt($("frames").value, 10);
  if (frames > 0) request.max_frame_num = frames;
  try {
    const reply = await call("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    });
    const text = reply.choices[0].message.content;
    messages.push(turn, { role: "assistant", content: text });
    const answer = addTurn("assistant", text);
    const report = reply.vilamp;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `keyframes (${report.keyframes.length} of ${report.sampled_frames} sampled frames): `
      + report.keyframes.map((k) => k.timestamp).join(" ") + ` · ${report.tokens.total} tokens · video ${report.video_cache}`;
    answer.append(timeline(report), meta);
  } catch (error) {
    addTurn("assistant error", error.message);
  } finally {
    $("question").disabled = $("send").disabled = false;
    $("question").focus();
  }
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  setStatus(`uploading ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  try {
    const stored = await call("/videos", { method: "POST", body: form });
    await loadVideos();
    $("videos").value = stored.url;
    startConversation(stored.url, file.name);
  } catch (error) {
    setStatus(error.message, true);
  }
}

$("videos").addEventListener("change", (e) => startConversation(e.target.value, e.target.selectedOptions[0].text));
$("upload").addEventListener("change", upload);
$("key").addEventListener("change", loadVideos);
$("ask").addEventListener("submit", ask);
loadVideos();
