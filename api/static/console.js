// The imgpipe console: plain modules, no build step. Everything a job says is shown as text
// (textContent), never as HTML: file names and error messages come from whoever uploaded.

const $ = (selector, root = document) => root.querySelector(selector);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};
const FINAL = new Set(["completed", "failed", "cancelled"]);
const STEPS = { queued: 1, processing: 2, retrying: 2, completed: 3, failed: 3, cancelled: 3 };

// --- the API ---------------------------------------------------------------------------------

const keyName = "imgpipe.apiKey";
const authHeaders = () => {
  const key = localStorage.getItem(keyName);
  return key ? { Authorization: `Bearer ${key}` } : {};
};

async function api(path, init = {}) {
  const response = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch { /* not a problem body */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}

// Server-Sent Events over fetch (EventSource cannot send the API key); calls onEvent with
// {id, event, data} until the server ends the stream or `signal` aborts it.
async function readEvents(path, onEvent, { lastEventId, signal } = {}) {
  const headers = { Accept: "text/event-stream", ...authHeaders() };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await api(path, { headers, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const blocks = buffer.split(/\r?\n\r?\n/);
    buffer = blocks.pop();
    for (const block of blocks) {
      const event = { id: null, event: "message", data: "" };
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(":")) continue;
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "data") event.data += (event.data ? "\n" : "") + text;
        else if (field === "id" || field === "event") event[field] = text;
      }
      if (event.data) onEvent({ ...event, data: JSON.parse(event.data) });
    }
  }
}

// --- pages -----------------------------------------------------------------------------------

const pages = {};

function showPage() {
  const name = (location.hash || "#upload").slice(1);
  const current = document.querySelector(`section[data-page="${CSS.escape(name)}"]`) ? name : "upload";
  for (const section of document.querySelectorAll("main section[data-page]")) {
    section.hidden = section.dataset.page !== current;
  }
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [page, hooks] of Object.entries(pages)) (page === current ? hooks.show : hooks.hide)?.();
  return current;
}

window.addEventListener("hashchange", () => {
  const current = showPage();
  $(`#page-${current} h2`).focus();
});

// --- upload ----------------------------------------------------------------------------------

let catalogue = { operations: [], max_operations: 20, default_operations: "" };

function numericSchema(schema) {
  if (schema.type === "integer" || schema.type === "number") return schema;
  return (schema.anyOf || []).find((option) => option.type === "integer" || option.type === "number");
}

function parameterControl(opIndex, name, schema) {
  const id = `op-${opIndex}-${name}`;
  const label = el("label", { htmlFor: id, textContent: schema.title || name });
  let input;
  const numeric = numericSchema(schema);
  if (schema.enum) {
    input = el("select", { id });
    for (const value of schema.enum) input.append(el("option", { value, textContent: value, selected: value === schema.default }));
  } else if (schema.type === "boolean") {
    input = el("input", { id, type: "checkbox", checked: Boolean(schema.default) });
  } else if (numeric) {
    input = el("input", { id, type: "number", step: numeric.type === "integer" ? "1" : "any", inputMode: "decimal" });
    if (numeric.minimum !== undefined) input.min = numeric.minimum;
    if (numeric.maximum !== undefined) input.max = numeric.maximum;
    input.placeholder = schema.default ?? "";
  } else {
    input = el("input", { id, type: "text", placeholder: schema.default ?? "" });
    if (schema.maxLength) input.maxLength = schema.maxLength;
  }
  input.dataset.param = name;
  input.dataset.kind = schema.enum ? "enum" : schema.type === "boolean" ? "boolean" : numeric ? "number" : "text";
  input.addEventListener("input", updatePreview);
  input.addEventListener("change", updatePreview);
  return el("div", { className: "param" }, label, input);
}

let opCounter = 0;

function addOperation(name) {
  const description = catalogue.operations.find((op) => op.name === name);
  if (!description) return;
  const index = ++opCounter;
  const params = el("div", { className: "params" });
  for (const [param, schema] of Object.entries(description.parameters.properties || {})) {
    if (param !== "name") params.append(parameterControl(index, param, schema));
  }
  const item = el("li", { className: "op" });
  item.dataset.name = name;
  const move = (delta) => {
    const sibling = delta < 0 ? item.previousElementSibling : item.nextElementSibling;
    if (sibling) (delta < 0 ? sibling.before(item) : sibling.after(item));
    updatePreview();
  };
  const buttons = el("div", { className: "row" },
    el("button", { type: "button", textContent: "Move up", onclick: () => move(-1) }),
    el("button", { type: "button", textContent: "Move down", onclick: () => move(1) }),
    el("button", { type: "button", textContent: "Remove", onclick: () => { item.remove(); updatePreview(); $("#op-add").focus(); } }),
  );
  for (const button of buttons.children) button.setAttribute("aria-label", `${button.textContent}: ${name} (operation ${index})`);
  item.append(el("fieldset", {},
    el("legend", { textContent: name }), el("p", { className: "hint", textContent: description.summary }), params, buttons));
  $("#op-list").append(item);
  updatePreview();
}

function formOperations() {
  return [...document.querySelectorAll("#op-list > li")].map((item) => {
    const operation = { name: item.dataset.name };
    for (const input of item.querySelectorAll("[data-param]")) {
      const kind = input.dataset.kind;
      if (kind === "boolean") { if (input.checked) operation[input.dataset.param] = true; continue; }
      if (input.value === "") continue;
      operation[input.dataset.param] = kind === "number" ? Number(input.value) : input.value;
    }
    return operation;
  });
}

function operationsField() {
  const typed = $("#grammar").value.trim();
  return typed || JSON.stringify(formOperations());
}

function updatePreview() {
  $("#op-preview").textContent = operationsField();
}

function formatBytes(bytes) {
  if (bytes == null) return "?";
  return bytes < 1024 ? `${bytes} B` : bytes < 1048576 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1048576).toFixed(2)} MB`;
}

function jobCard(file) {
  const status = el("p", { className: "status", textContent: "uploading" });
  status.setAttribute("role", "status");
  const progress = el("progress", { max: 3, value: 0 });
  progress.setAttribute("aria-label", `Progress of ${file.name}`);
  const original = el("img", { src: URL.createObjectURL(file), alt: `Original: ${file.name}` });
  const compare = el("div", { className: "compare" },
    el("figure", {}, original, el("figcaption", { textContent: `Original, ${formatBytes(file.size)}` })));
  const cancel = el("button", { type: "button", textContent: "Cancel", disabled: true });
  cancel.setAttribute("aria-label", `Cancel the job of ${file.name}`);
  const card = el("li", { className: "job" }, el("h4", { textContent: file.name }), status, progress, cancel, compare);
  $("#jobs").prepend(card);
  return { card, status, progress, compare, cancel };
}

function showStatus(view, status, text) {
  view.status.dataset.status = status;
  view.status.textContent = text;
  view.progress.value = STEPS[status] || 0;
  view.cancel.hidden = FINAL.has(status);
}

// A queued job is never processed; a running one is stopped and stores nothing; a finished one
// answers 409, whose message is shown.
async function cancelJob(view, jobId) {
  view.cancel.disabled = true;
  try {
    const record = await (await api(`/jobs/${jobId}`, { method: "DELETE" })).json();
    showStatus(view, record.status, record.status);
  } catch (error) {
    view.status.textContent += ` (not cancelled: ${error.message})`;
    view.cancel.disabled = false;
  }
}

const extension = (format) => (format === "jpeg" ? "jpg" : format);

async function showResult(view, jobId) {
  const record = await (await api(`/status/${jobId}`)).json();
  const results = record.results?.length ? record.results : [{ ...record.result, name: "default" }];
  const name = record.original.filename || jobId;
  const several = results.length > 1;
  for (const result of results) {
    // One variant: the job's result, as before variants; several: each by its name.
    const blob = await (await api(several ? `/result/${jobId}/${result.name}` : `/result/${jobId}`)).blob();
    const url = URL.createObjectURL(blob);
    const what = several ? `Result ${result.name}` : "Result";
    const caption = `${what}, ${result.width}×${result.height} ${result.format}, ${formatBytes(result.bytes)}`;
    const download = el("a", {
      href: url, download: `${jobId}${several ? `-${result.name}` : ""}.${extension(result.format)}`,
      textContent: several ? `Download ${result.name}` : "Download the result",
    });
    view.compare.append(el("figure", {}, el("img", { src: url, alt: `${what} of ${name}` }),
      el("figcaption", { textContent: caption }), download));
  }
  const timings = record.timings || {};
  const waited = timings.queue_wait_ms != null ? `${Math.round(timings.queue_wait_ms)} ms queued` : "";
  const took = timings.processing_ms != null ? `${Math.round(timings.processing_ms)} ms processing` : "";
  view.card.append(el("p", { className: "hint",
    textContent: `Original ${record.original.width}×${record.original.height} ${record.original.format}; ${[waited, took].filter(Boolean).join(", ")}; worker ${record.worker}` }));
}

async function follow(view, jobId) {
  let lastEventId = null;
  let final = null;
  for (let attempt = 0; attempt < 20 && !final; attempt++) {
    try {
      await readEvents(`/jobs/${jobId}/events`, ({ id, event, data }) => {
        if (event === "feed") { view.status.textContent += " (the API is reconnecting to the broker)"; return; }
        if (event === "error") { showStatus(view, "failed", `stream ended: ${data.detail}`); final = "error"; return; }
        lastEventId = id;
        const attempts = data.attempts > 1 ? `, attempt ${data.attempts}` : "";
        const worker = data.worker && data.status === "processing" ? ` on ${data.worker}` : "";
        let text = `${data.status}${worker}${attempts}`;
        if (data.status === "failed") text = `failed: ${data.error_reason || "error"} — ${data.error || ""}`;
        if (data.status === "retrying") text = `retrying after: ${data.error || "a transient error"}`;
        showStatus(view, data.status, text);
        if (FINAL.has(data.status)) final = data.status;
      }, { lastEventId });
    } catch (error) {
      if (error.status && error.status < 500 && error.status !== 429) { showStatus(view, "failed", error.message); return; }
    }
    if (!final) await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  if (final === "completed") await showResult(view, jobId);
}

async function uploadOne(file) {
  const view = jobCard(file);
  const form = new FormData();
  form.append("file", file);
  if ($("#preset").value) {
    form.append("preset", $("#preset").value);
  } else {
    form.append("operations", operationsField());
    if ($("#output-format").value) form.append("output_format", $("#output-format").value);
    if ($("#quality").value) form.append("quality", $("#quality").value);
  }
  try {
    const accepted = await (await api("/upload", { method: "POST", body: form })).json();
    view.card.dataset.jobId = accepted.job_id;
    view.cancel.disabled = false;
    view.cancel.addEventListener("click", () => cancelJob(view, accepted.job_id));
    showStatus(view, "queued", "queued");
    await follow(view, accepted.job_id);
  } catch (error) {
    showStatus(view, "failed", `refused: ${error.message}`);
  }
}

async function setUpUpload() {
  try {
    catalogue = await (await api("/operations")).json();
  } catch (error) {
    $("#upload-error").textContent = `Could not read the operations: ${error.message}`;
  }
  try {
    const { presets } = await (await api("/presets")).json();
    for (const [name, variants] of Object.entries(presets)) {
      const names = variants.map((variant) => variant.name).join(", ");
      $("#preset").append(el("option", { value: name, textContent: `${name} (${names})` }));
    }
  } catch (error) {
    $("#upload-error").textContent = `Could not read the presets: ${error.message}`;
  }
  const picker = $("#op-add");
  for (const op of catalogue.operations) picker.append(el("option", { value: op.name, textContent: op.name }));
  for (const name of catalogue.default_operations.split(",").map((s) => s.trim()).filter((s) => /^[a-z_]+$/.test(s))) {
    addOperation(name);
  }
  $("#op-add-button").addEventListener("click", () => addOperation(picker.value));
  $("#grammar").addEventListener("input", updatePreview);

  const drop = $("#drop");
  const files = $("#files");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    files.files = event.dataTransfer.files;
  });

  $("#upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("#upload-error").textContent = "";
    if (!files.files.length) {
      $("#upload-error").textContent = "Choose at least one image.";
      files.focus();
      return;
    }
    for (const file of files.files) uploadOne(file);
  });
}

// --- system ----------------------------------------------------------------------------------

const HISTORY = 150; // readings, one every 2 s: 5 minutes
const depths = [];
let systemTimer = null;
let feedAbort = null;

function figure(label, value) {
  return el("div", {}, el("dt", { textContent: label }), el("dd", { textContent: value }));
}

const seconds = (s) => (s == null ? "—" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);

function queueDepth(queues, role) {
  return Object.values(queues || {}).filter((q) => q.role === role && q.exists)
    .reduce((sum, q) => sum + q.ready + q.unacked, 0);
}

function drawDepths() {
  const svg = $("#depth-chart");
  const peak = Math.max(1, ...depths.flatMap((d) => [d.work, d.retry, d.dead]));
  const line = (key) => depths.map((d, i) => `${(i / (HISTORY - 1)) * 600},${150 - (d[key] / peak) * 140}`).join(" ");
  svg.replaceChildren();
  for (const [key, color] of [["work", "#0b57d0"], ["retry", "#9a6700"], ["dead", "#c0362c"]]) {
    const polyline = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    polyline.setAttribute("points", line(key));
    polyline.setAttribute("fill", "none");
    polyline.setAttribute("stroke", color);
    polyline.setAttribute("stroke-width", "2");
    svg.append(polyline);
  }
  const last = depths.at(-1) || { work: 0, retry: 0, dead: 0 };
  const legend = $("#depth-summary");
  legend.replaceChildren(
    el("span", { className: "work", textContent: `work queue: ${last.work}` }),
    el("span", { className: "retry", textContent: `retry queues: ${last.retry}` }),
    el("span", { className: "dead", textContent: `dead letters: ${last.dead}` }),
    el("span", { textContent: `(peak shown: ${peak})` }),
  );
}

async function refreshSystem() {
  let stats;
  try {
    stats = await (await api("/stats")).json();
  } catch (error) {
    $("#system-status").textContent = `Statistics unavailable: ${error.message}`;
    return;
  }
  const queues = stats.queues?.queues || {};
  depths.push({ work: queueDepth(queues, "work"), retry: queueDepth(queues, "retry"), dead: queueDepth(queues, "dead_letter") });
  if (depths.length > HISTORY) depths.shift();
  drawDepths();
  const latency = stats.latency_s?.recent || {};
  const throughput = stats.throughput || {};
  $("#figures").replaceChildren(
    figure("Throughput", `${(throughput.completed_per_s || 0).toFixed(2)} jobs/s`),
    figure("Latency p50", seconds(latency.p50)),
    figure("Latency p95", seconds(latency.p95)),
    figure("Latency p99", seconds(latency.p99)),
    figure("Waiting in the work queue", String(depths.at(-1).work)),
    figure("Active workers", String(stats.workers?.active ?? 0)),
    figure("Completed", String(stats.jobs?.completed ?? 0)),
    figure("Failed", String(stats.jobs?.failed ?? 0)),
  );
  const workers = (stats.workers?.list || []).map((w) => {
    const meter = el("meter", { min: 0, max: 1, value: w.utilization });
    meter.setAttribute("aria-label", `${w.worker} utilization`);
    return el("tr", {}, el("td", { textContent: w.worker }),
      el("td", { textContent: w.active ? (w.busy ? "busy" : "idle") : w.stopped ? "stopped" : "silent" }),
      el("td", {}, meter, ` ${Math.round(w.utilization * 100)} %`),
      el("td", { textContent: String(w.completed) }), el("td", { textContent: String(w.failed) }));
  });
  $("#workers tbody").replaceChildren(...workers);
  const reasons = Object.entries(stats.jobs?.failed_by_reason || {}).sort((a, b) => b[1] - a[1]);
  $("#failures tbody").replaceChildren(...reasons.map(([reason, count]) =>
    el("tr", {}, el("td", { textContent: reason }), el("td", { textContent: String(count) }))));
  const sources = stats.sources || {};
  const stale = Object.entries(sources).filter(([, s]) => !s.available).map(([name, s]) => `${name}: ${s.error}`);
  $("#system-status").textContent = stale.length ? `Some figures are stale (${stale.join("; ")})` : `Updated ${new Date().toLocaleTimeString()}`;
}

async function followEverything() {
  feedAbort = new AbortController();
  const feed = $("#event-feed");
  $("#feed-status").textContent = "Following every job's changes.";
  try {
    await readEvents("/events", ({ event, data }) => {
      if (!data.job_id) { $("#feed-status").textContent = `${event}: ${data.broker || data.detail || ""}`; return; }
      const when = new Date(data.occurred_at).toLocaleTimeString();
      feed.prepend(el("li", { textContent: `${when} ${data.job_id.slice(0, 8)} ${data.status}${data.worker ? ` (${data.worker})` : ""}${data.error_reason ? `: ${data.error_reason}` : ""}` }));
      while (feed.children.length > 50) feed.lastElementChild.remove();
    }, { signal: feedAbort.signal });
  } catch (error) {
    if (error.name !== "AbortError") $("#feed-status").textContent = `Live events unavailable: ${error.message}`;
  }
}

pages.system = {
  show() {
    refreshSystem();
    systemTimer = setInterval(refreshSystem, 2000);
    followEverything();
  },
  hide() {
    clearInterval(systemTimer);
    feedAbort?.abort();
  },
};

// --- dead letters ----------------------------------------------------------------------------

async function replay(body, what) {
  $("#dlq-status").textContent = `Replaying ${what}…`;
  try {
    const result = await (await api("/dlq/replay", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    await refreshDeadLetters();
    $("#dlq-status").textContent = `Replayed ${result.replayed} (${what}); ${result.remaining} left` +
      (result.skipped.length ? `; ${result.skipped.length} could not be replayed` : "");
  } catch (error) {
    $("#dlq-status").textContent = `Replay refused: ${error.message}`;
  }
}

async function refreshDeadLetters() {
  let stats;
  try {
    stats = await (await api("/dlq/stats?recent=100")).json();
  } catch (error) {
    $("#dlq-status").textContent = `Dead letters unavailable: ${error.message}`;
    return;
  }
  $("#dlq-status").textContent = `${stats.count} in the dead-letter queue`;
  $("#dlq-reasons").replaceChildren(...Object.entries(stats.by_reason).map(([reason, count]) =>
    el("button", { type: "button", textContent: `Replay ${reason} (${count})`, onclick: () => replay({ reason }, reason) })));
  $("#dlq-table tbody").replaceChildren(...stats.recent.map((letter) => {
    const action = letter.job_id
      ? el("button", { type: "button", textContent: "Replay", onclick: () => replay({ job_id: letter.job_id }, letter.job_id) })
      : el("span", { className: "hint", textContent: "no job id" });
    if (letter.job_id) action.setAttribute("aria-label", `Replay job ${letter.job_id}`);
    return el("tr", {}, el("td", {}, el("code", { textContent: letter.job_id || "—" })),
      el("td", { textContent: letter.reason }), el("td", { textContent: letter.error || "" }),
      el("td", { textContent: String(letter.attempts ?? "") }),
      el("td", { textContent: letter.failed_at ? new Date(letter.failed_at).toLocaleString() : "" }), el("td", {}, action));
  }));
}

pages["dead-letters"] = { show: refreshDeadLetters };

// --- storage -------------------------------------------------------------------------------

let storageCursor = null;

async function previewFigure(job, object) {
  // A job's one result is "Result"; each of several variants is named.
  const variant = object.kind === "result" && object.variant !== "default" ? ` ${object.variant}` : "";
  const label = `${object.kind === "original" ? "Original" : "Result"}${variant} of ${job.filename || job.job_id}`;
  const caption = el("figcaption", {
    textContent: `${object.kind}${variant}, ${object.width}×${object.height} ${object.format}, ${formatBytes(object.bytes)}`,
  });
  if (!object.preview_url) {
    return el("figure", {}, el("p", { className: "hint", textContent: "no preview (too large, or a format a browser does not show)" }), caption);
  }
  const image = el("img", { alt: label, loading: "lazy" });
  try {
    // Fetched with the API key (an <img src> could not send it), shown from a blob.
    image.src = URL.createObjectURL(await (await api(new URL(object.preview_url).pathname)).blob());
  } catch (error) {
    return el("figure", {}, el("p", { className: "error", textContent: `preview unavailable: ${error.message}` }), caption);
  }
  return el("figure", {}, image, caption);
}

async function storedCard(job) {
  const stored = job.stored_at ? new Date(job.stored_at).toLocaleString() : "";
  const figures = await Promise.all(job.objects.map((object) => previewFigure(job, object)));
  const card = el("li", { className: "job" },
    el("h3", { textContent: job.filename || job.job_id }),
    el("p", { className: "hint" }, el("code", { textContent: job.job_id }),
      document.createTextNode(` · ${job.status}${job.owner ? ` · ${job.owner}` : ""} · stored ${stored}`)),
    el("div", { className: "compare" }, ...figures));
  card.dataset.jobId = job.job_id;
  return card;
}

async function loadStorage(more = false) {
  if (!more) {
    storageCursor = null;
    $("#stored").replaceChildren();
  }
  $("#storage-status").textContent = "Loading…";
  let page;
  try {
    const query = new URLSearchParams({ limit: "12", ...(storageCursor ? { after: storageCursor } : {}) });
    page = await (await api(`/storage?${query}`)).json();
  } catch (error) {
    $("#storage-status").textContent = `Storage unavailable: ${error.message}`;
    return;
  }
  $("#stored").append(...await Promise.all(page.jobs.map(storedCard)));
  storageCursor = page.next_cursor;
  $("#storage-more").hidden = !storageCursor;
  const shown = $("#stored").children.length;
  $("#storage-status").textContent = shown ? `${shown} job${shown === 1 ? "" : "s"} shown${storageCursor ? "; older ones below" : ""}` : "Nothing stored yet";
  const consoleLink = $("#storage-console");
  consoleLink.hidden = !page.console_url;
  if (page.console_url) consoleLink.href = page.console_url;
}

pages.storage = { show: () => loadStorage() };

// --- start -----------------------------------------------------------------------------------

$("#api-key").value = localStorage.getItem(keyName) || "";
$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (key) localStorage.setItem(keyName, key);
  else localStorage.removeItem(keyName);
  location.reload();
});
$("#dlq-refresh").addEventListener("click", refreshDeadLetters);
$("#dlq-replay-all").addEventListener("click", () => replay({}, "everything"));
$("#storage-refresh").addEventListener("click", () => loadStorage());
$("#storage-more").addEventListener("click", () => loadStorage(true));

setUpUpload().then(showPage);
