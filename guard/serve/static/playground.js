// guard playground: screen prompts and generate on a deployment. Everything the server returns is
// put on the page with textContent (never as HTML), so a hostile prompt cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
let deployments = [];

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fmt(x) {
  return typeof x === "number" ? x.toFixed(3) : "–";
}

async function api(path, body) {
  const opts = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { status: r.status, data };
}

function errorText(res) {
  const e = res.data && res.data.error;
  return "HTTP " + res.status + (e ? ": " + e.message : "");
}

async function loadDeployments() {
  const res = await api("/v1/deployments");
  const sel = $("deployment");
  sel.replaceChildren();
  if (res.status !== 200) {
    setStatus("cannot list deployments (" + errorText(res) + ")", true);
    return false;
  }
  deployments = res.data.data;
  for (const d of deployments) {
    const o = el("option", d.name + " (" + d.kind + (d.ready ? "" : ", loading") + ")");
    o.value = d.name;
    sel.appendChild(o);
  }
  const want = new URLSearchParams(location.search).get("deployment");
  if (want && deployments.some((d) => d.name === want)) sel.value = want;
  onDeployment();
  return true;
}

function current() {
  return deployments.find((d) => d.name === $("deployment").value);
}

function onDeployment() {
  const d = current();
  $("generate-btn").disabled = !(d && d.endpoints.includes("/v1/images/generations"));
  $("policy").textContent = d && d.policy ? "policy " + d.policy.name + " · sha256 " + d.policy.sha256 : "";
}

function prompts() {
  return $("prompts").value.split("\n").map((p) => p.trim()).filter((p) => p.length > 0);
}

function renderVerdicts(list, texts) {
  const tbody = $("results").querySelector("tbody");
  tbody.replaceChildren();
  list.forEach((r, i) => {
    const tr = el("tr");
    tr.dataset.decision = r.decision;
    tr.appendChild(el("td", i));
    tr.appendChild(el("td", texts[i], "prompt"));
    const td = el("td");
    td.appendChild(el("span", r.decision, "badge " + r.decision));
    tr.appendChild(td);
    tr.appendChild(el("td", fmt(r.score), "score"));
    tr.appendChild(el("td", fmt(r.threshold), "threshold"));
    // an allowed prompt has no matched concept; the nearest one is shown as such
    const near = r.decision === "allow";
    tr.appendChild(el("td", r.concept ? (near ? "nearest: " + r.concept : r.concept) : "–", "concept"));
    tr.appendChild(el("td", near ? "–" : (r.category || "–"), "category"));
    const reasons = el("td", null, "reasons");
    const ul = el("ul");
    for (const why of r.reasons || []) ul.appendChild(el("li", why));
    reasons.appendChild(ul);
    tr.appendChild(reasons);
    tbody.appendChild(tr);
  });
}

async function screen() {
  const d = current();
  const texts = prompts();
  if (!d || texts.length === 0) { setStatus("type at least one prompt", true); return; }
  setStatus("screening " + texts.length + " prompt(s)…");
  const t0 = performance.now();
  const res = await api("/v1/screen", { deployment: d.name, prompts: texts });
  if (res.status !== 200) { setStatus(errorText(res), true); return; }
  renderVerdicts(res.data.results, texts);
  $("policy").textContent = "policy " + res.data.policy.name + " · sha256 " + res.data.policy.sha256;
  const blocked = res.data.results.filter((r) => r.decision === "block").length;
  setStatus("screened " + texts.length + " prompt(s): " + blocked + " blocked · " +
    Math.round(performance.now() - t0) + " ms");
  document.body.dataset.screened = "1";
}

async function generate() {
  const d = current();
  const texts = prompts();
  if (!d || texts.length === 0) { setStatus("type a prompt", true); return; }
  setStatus("generating on " + d.name + "…");
  const res = await api("/v1/images/generations", { model: d.name, prompt: texts[0], n: 1 });
  const box = $("images");
  if (res.status !== 200) {
    setStatus(errorText(res), true);
    const g = res.data && res.data.error && res.data.error.guard;
    if (g) renderVerdicts(g.map((x) => ({ ...x, decision: x.decision === "blocked" ? "block" : x.decision })), [texts[0]]);
    document.body.dataset.generated = "error";
    return;
  }
  for (const item of res.data.data) {
    const fig = el("figure");
    const img = el("img");
    img.src = "data:image/png;base64," + item.b64_json;
    img.alt = texts[0];
    fig.appendChild(img);
    fig.appendChild(el("figcaption", item.guard.decision + " · " + texts[0]));
    box.prepend(fig);
  }
  setStatus("generated " + res.data.data.length + " image(s) · request " + res.data.guard.request_id);
  document.body.dataset.generated = "1";
}

async function main() {
  const q = new URLSearchParams(location.search);
  $("apikey").value = sessionStorage.getItem("guard-key") || "";
  $("apikey").addEventListener("change", () => { sessionStorage.setItem("guard-key", $("apikey").value); loadDeployments(); });
  $("deployment").addEventListener("change", onDeployment);
  $("screen-btn").addEventListener("click", screen);
  $("generate-btn").addEventListener("click", generate);
  if (q.get("prompts")) $("prompts").value = q.get("prompts");
  const ok = await loadDeployments();
  document.body.dataset.ready = "1";
  if (ok && q.get("run") === "screen") await screen();
}

main();
