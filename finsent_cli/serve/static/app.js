// finsent's page: classify headlines with POST /v1/predict, explain one with POST /v1/explain,
// classify a file with POST /v1/predict/file. Plain JavaScript, no build step, nothing from a CDN.
// Every text from the server is put in the page with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let lastTarget = null;

function headers(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

// The target input is shown only for a model that judges sentiment toward a named company (/health says
// target_conditioned); a sentence-level model refuses a target, so its page never sends one.
function showTarget(shown, required) {
  $("target-field").hidden = !shown;
  $("target").required = required;
}

function chosenTarget() {
  return $("target-field").hidden ? null : $("target").value.trim() || null;
}

function say(message, isError) {
  const s = $("status");
  s.textContent = message;
  s.classList.toggle("error", Boolean(isError));
}

async function call(path, options) {
  const res = await fetch(path, options);
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try {
      const body = await res.json();
      if (body.error) message = body.error;
    } catch (e) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return res;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderRows(rows) {
  const body = $("results").querySelector("tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr");
    tr.tabIndex = 0;
    tr.dataset.text = row.text;
    tr.setAttribute("aria-selected", "false");
    tr.setAttribute("aria-label", `Explain: ${row.text}`);
    tr.append(el("td", "line", String(row.line)), el("td", "text", row.text));
    const label = row.label || "none";
    const labelCell = el("td");
    labelCell.append(el("span", "label " + label, row.label || row.status));
    if (row.score !== null && row.score !== undefined) {  // p_positive - p_negative, in [-1, 1]
      const score = el("span", "score", (row.score >= 0 ? "+" : "\u2212") + Math.abs(row.score).toFixed(2));
      score.title = "score: p_positive \u2212 p_negative, from \u22121 (negative) to +1 (positive)";
      labelCell.append(" ", score);
    }
    const conf = el("td");
    if (row.confidence !== null) {
      const bar = el("div", "bar " + label);
      const fill = el("span");
      fill.style.width = (row.confidence * 100).toFixed(1) + "%";
      bar.append(fill, el("b", "", (row.confidence * 100).toFixed(1) + "%"));
      bar.title = `negative ${row.p_negative.toFixed(3)}, neutral ${row.p_neutral.toFixed(3)}, positive ${row.p_positive.toFixed(3)}`;
      conf.append(bar);
    }
    tr.append(labelCell, conf);
    if (row.label) {
      tr.addEventListener("click", () => explain(tr));
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); explain(tr); }
      });
    }
    body.append(tr);
  }
  $("results-section").hidden = false;
}

async function predict(event) {
  event.preventDefault();
  const texts = $("texts").value.split("\n").map((t) => t.trim()).filter((t) => t.length > 0);
  if (texts.length === 0) { say("Type at least one headline.", true); return; }
  const target = chosenTarget();
  $("submit").disabled = true;
  say("Classifying " + texts.length + (texts.length === 1 ? " headline…" : " headlines…"));
  try {
    const res = await call("/v1/predict", { method: "POST", headers: headers(true), body: JSON.stringify({ texts, target }) });
    const body = await res.json();
    lastTarget = target;
    renderRows(body.results);
    $("explain-section").hidden = true;
    say(`${body.results.length} result(s).`);
  } catch (e) {
    say(e.message, true);
  } finally {
    $("submit").disabled = false;
  }
}

function colour(delta, scale) {
  const alpha = scale > 0 ? Math.min(1, Math.abs(delta) / scale) * 0.6 : 0;
  return delta >= 0 ? `rgba(22, 163, 74, ${alpha.toFixed(3)})` : `rgba(220, 38, 38, ${alpha.toFixed(3)})`;
}

async function explain(tr) {
  for (const other of tr.parentElement.children) other.setAttribute("aria-selected", "false");
  tr.setAttribute("aria-selected", "true");
  say("Explaining…");
  try {
    const res = await call("/v1/explain", { method: "POST", headers: headers(true), body: JSON.stringify({ text: tr.dataset.text, target: lastTarget }) });
    const exp = await res.json();
    const out = $("explain-text");
    out.replaceChildren();
    const scale = Math.max(0, ...exp.words.map((w) => Math.abs(w.delta)));
    let cursor = 0;
    for (const w of exp.words) {
      out.append(document.createTextNode(exp.text.slice(cursor, w.start)));
      const span = el("span", "w", w.word);
      span.style.background = colour(w.delta, scale);
      span.title = `delta ${w.delta >= 0 ? "+" : ""}${w.delta.toFixed(4)}; p(${exp.label}) without it ${w.p_without.toFixed(4)}`;
      span.dataset.delta = String(w.delta);
      out.append(span);
      cursor = w.end;
    }
    out.append(document.createTextNode(exp.text.slice(cursor)));
    $("explain-title").textContent = `Why ${exp.label}` + (exp.target ? ` toward ${exp.target}` : "") + ` (${(exp.probs[exp.label] * 100).toFixed(1)}%)`;
    $("explain-note").textContent = `Occlusion: each word masked in turn. Top words: ${exp.top_k.join(", ")}; ` +
      `comprehensiveness ${exp.comprehensiveness.toFixed(3)}, sufficiency ${exp.sufficiency.toFixed(3)}.`;
    $("explain-section").hidden = false;
    $("explain-section").scrollIntoView({ block: "nearest" });  // focus stays on the row: arrows/Tab go on
    say("");
  } catch (e) {
    say(e.message, true);
  }
}

async function upload() {
  const file = $("file").files[0];
  if (!file) return;
  const target = chosenTarget();
  const query = new URLSearchParams({ filename: file.name });
  if (target) query.set("target", target);
  say(`Classifying ${file.name}…`);
  try {
    const res = await call("/v1/predict/file?" + query, { method: "POST", headers: headers(false), body: file });
    const blob = await res.blob();
    const link = el("a", "", "Download " + file.name.replace(/\.[^.]*$/, "") + ".predictions.csv");
    link.href = URL.createObjectURL(blob);
    link.download = file.name.replace(/\.[^.]*$/, "") + ".predictions.csv";
    const s = $("status");
    s.classList.remove("error");
    s.replaceChildren(document.createTextNode(`${file.name} classified. `), link);
    link.click();
  } catch (e) {
    say(e.message, true);
  } finally {
    $("file").value = "";
  }
}

async function start() {
  $("predict-form").addEventListener("submit", predict);
  $("texts").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) predict(e);
  });
  $("file").addEventListener("change", upload);
  try {
    const health = await (await call("/health")).json();
    const name = (health.model || "").split("/").filter(Boolean).pop() || "model";
    $("model").textContent = `Model ${name} (${health.kind}, ${health.backend}): negative, neutral or positive.`;
    $("key-field").hidden = !health.auth;
    showTarget(Boolean(health.target_conditioned), Boolean(health.target_conditioned));
  } catch (e) {
    showTarget(true, false);  // the model unknown: offer the input, the server says whether it is needed
  }
}

document.addEventListener("DOMContentLoaded", start);
