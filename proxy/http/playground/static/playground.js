// image-proxy playground: plain JS, no build step. Talks to the gateway like any client:
// GET {base}/models, POST {base}/images/generations or /edits (SSE read with fetch streams),
// and live progress over Socket.IO namespace /image-progress.
"use strict";
(() => {
  const API = document.querySelector('meta[name="api-base"]')?.content || "/v1";
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "playground.key";
  const MODEL_STORE = "playground.model";
  const HISTORY_STORE = "playground.history";
  const HISTORY_MAX = 12;
  // Handled by the form itself (prompt, stream toggle) or not settable here.
  const FIXED_PARAMS = new Set(["prompt", "stream", "partial_images", "response_format", "*"]);
  const COMMON_SIZES = ["1024x1024", "1536x1024", "1024x1536", "512x512", "256x256"];
  const MIME = { png: "image/png", jpeg: "image/jpeg", jpg: "image/jpeg", webp: "image/webp" };

  const state = { models: new Map(), mode: "generate", image: null, job: null,
                  socket: null, socketKey: null, urls: [] };

  // ---------- small helpers ----------
  const load = (name, fallback) => {
    try { const v = localStorage.getItem(name); return v === null ? fallback : JSON.parse(v); }
    catch { return fallback; }
  };
  const save = (name, value) => {
    try { localStorage.setItem(name, JSON.stringify(value)); } catch { /* storage full/blocked */ }
  };
  const el = (tag, { dataset, ...props } = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    Object.assign(node.dataset, dataset);
    node.append(...children);
    return node;
  };
  const key = () => $("key").value.trim();
  const authHeaders = () => (key() ? { Authorization: `Bearer ${key()}` } : {});

  function uuid4() {
    if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function b64ToBlob(b64, type) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type });
  }

  // The OpenAI error envelope's message, in plain words.
  async function errorFrom(res) {
    let message = `The gateway answered ${res.status} ${res.statusText}`.trim() + ".";
    try {
      const body = await res.json();
      if (body?.error?.message) message = body.error.message;
    } catch { /* not JSON */ }
    return new Error(message);
  }
  function describe(err) {
    if (err?.name === "AbortError") return "Cancelled.";
    if (err instanceof TypeError) return `Could not reach the gateway (${err.message}).`;
    return err?.message || String(err);
  }
  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  // ---------- models and their parameters ----------
  let modelsRequest = 0;
  async function loadModels() {
    const request = ++modelsRequest;
    const select = $("model");
    const wanted = select.value || load(MODEL_STORE, "");
    $("model-note").textContent = "Loading models…";
    try {
      const res = await fetch(`${API}/models`, { headers: authHeaders() });
      if (!res.ok) throw await errorFrom(res);
      const body = await res.json();
      if (request !== modelsRequest) return;
      state.models = new Map(body.data.map((m) => [m.id, m]));
      select.replaceChildren(...body.data.map((m) => new Option(m.id, m.id)));
      if (state.models.has(wanted)) select.value = wanted;
      $("model-note").textContent = "";
      showError("");
    } catch (err) {
      if (request !== modelsRequest) return;
      state.models = new Map();
      select.replaceChildren();
      $("model-note").textContent = "No models loaded.";
      showError(describe(err));
    }
    modelChanged();
  }

  function modelChanged() {
    const model = state.models.get($("model").value);
    if (model) save(MODEL_STORE, model.id);
    const canEdit = !model || model.capabilities?.edits !== false;
    $("mode-edit").disabled = !canEdit;
    if (!canEdit && state.mode === "edit") setMode("generate");
    const partial = model?.parameters?.partial_images;
    if (partial?.maximum !== undefined) $("partial-images").max = partial.maximum;
    let note = "";
    if (model?.parameters?.["*"]) note = "Any parameter is forwarded to the upstream unchecked.";
    else if (model && !canEdit) note = "This model cannot edit images.";
    if (model) $("model-note").textContent = note;
    renderParams(model?.parameters || {});
  }

  function currentValues() {
    const values = {};
    for (const field of $("params").querySelectorAll("[data-param]")) {
      const input = field.querySelector("input, select");
      if (input && field.dataset.kind !== "array") values[field.dataset.param] = input.value;
    }
    return values;
  }

  function sizeChoices(spec) {
    const range = spec.range;
    const fits = (s) => {
      if (!range) return true;
      const [w, h] = s.split("x").map(Number);
      const m = range.multiple_of || 1;
      return w % m === 0 && h % m === 0 && Math.min(w, h) >= (range.min_edge || 0) &&
             Math.max(w, h) <= (range.max_edge || Infinity);
    };
    return [...new Set([...(spec.enum || []), ...COMMON_SIZES.filter(fits)])];
  }

  // One form control per parameter the model accepts: enums → selects, ranges → numbers.
  function paramField(name, spec) {
    const title = el("span", { textContent: name.replace(/_/g, " ") });
    if (spec.type === "array" && spec.items?.enum) {
      const checks = el("div", { className: "checks" },
        ...spec.items.enum.map((v) => el("label", {}, el("input", { type: "checkbox", value: v }), ` ${v}`)));
      return el("div", { className: "field wide", dataset: { param: name, kind: "array" } }, title, checks);
    }
    let input, kind;
    if (spec.enum && !spec.format) {
      kind = "select";
      input = el("select", {}, new Option(spec.default ? `default (${spec.default})` : "default", ""),
                 ...spec.enum.map((v) => new Option(v, v)));
    } else if (spec.type === "integer" || spec.type === "number") {
      kind = "number";
      input = el("input", { type: "number", step: spec.type === "integer" ? "1" : "any" });
      if (spec.minimum !== undefined) input.min = spec.minimum;
      if (spec.maximum !== undefined) input.max = spec.maximum;
      if (spec.minimum !== undefined && spec.maximum !== undefined && spec.maximum < 1e6) {
        input.placeholder = `${spec.minimum}–${spec.maximum}`;
      }
    } else if (spec.type === "boolean") {
      kind = "bool";
      input = el("input", { type: "checkbox" });
    } else {
      kind = "text";
      input = el("input", { type: "text", spellcheck: false });
      if (spec.format === "WxH") {
        const list = el("datalist", { id: `choices-${name}` },
                        ...sizeChoices(spec).map((v) => new Option(v, v)));
        input.setAttribute("list", list.id);
        input.placeholder = spec.maps_to ? "WxH or W:H" : (spec.default || "WxH");
        title.append(list);
      } else if (spec.format === "W:H") {
        input.placeholder = "W:H, e.g. 16:9";
      }
    }
    input.name = name;
    const wide = kind === "text" && !spec.format;
    return el("label", { className: wide ? "field wide" : "field", dataset: { param: name, kind } },
              title, input);
  }

  function renderParams(params) {
    const previous = currentValues();
    const box = $("params");
    box.replaceChildren(...Object.entries(params)
      .filter(([name]) => !FIXED_PARAMS.has(name))
      .map(([name, spec]) => paramField(name, spec)));
    for (const [name, value] of Object.entries(previous)) {
      const input = box.querySelector(`[data-param="${CSS.escape(name)}"] :is(input, select)`);
      if (!input || input.type === "checkbox") continue;
      if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) continue;
      input.value = value;
    }
    $("params-box").hidden = box.childElementCount === 0;
  }

  function collectParams() {
    const out = {};
    for (const field of $("params").querySelectorAll("[data-param]")) {
      const { param, kind } = field.dataset;
      if (kind === "array") {
        // Multipart carries one string per field: lists go with JSON requests only.
        const picked = [...field.querySelectorAll("input:checked")].map((i) => i.value);
        if (picked.length && state.mode === "generate") out[param] = picked;
        continue;
      }
      const input = field.querySelector("input, select");
      if (kind === "bool") { if (input.checked) out[param] = true; continue; }
      const value = input.value.trim();
      if (value !== "") out[param] = kind === "number" ? Number(value) : value;
    }
    return out;
  }

  // ---------- modes and the image to edit ----------
  function setMode(mode) {
    state.mode = mode;
    $("form").dataset.mode = mode;
    $("mode-generate").setAttribute("aria-selected", String(mode === "generate"));
    $("mode-edit").setAttribute("aria-selected", String(mode === "edit"));
    $("edit-inputs").hidden = mode !== "edit";
    if (!state.job || state.job.done) $("submit").textContent = mode === "edit" ? "Edit" : "Generate";
  }

  function setImage(file) {
    if (!file || !file.type.startsWith("image/")) return;
    state.image = file;
    const preview = $("image-preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }

  // ---------- live progress (Socket.IO /image-progress) ----------
  function socketFor(token) {
    if (typeof io !== "function") return null;
    if (state.socket && state.socketKey === token) return state.socket;
    state.socket?.disconnect();
    const socket = io(`${location.origin}/image-progress`,
                      { auth: { token }, transports: ["websocket"], autoConnect: false });
    socket.on("progress", onProgress);
    // Rooms do not survive a reconnect: subscribe the running job again.
    socket.on("connect", () => {
      const job = state.job;
      if (job && job.live && !job.done) subscribeOn(socket, job);
    });
    socket.on("connect_error", (err) => { socket.lastError = err.message; });
    state.socket = socket;
    state.socketKey = token;
    return socket;
  }

  function whenConnected(socket, ms) {
    if (socket.connected) return Promise.resolve(true);
    if (!socket.active) socket.connect(); // a refused socket does not retry by itself
    return new Promise((resolve) => {
      const done = (ok) => {
        clearTimeout(timer);
        socket.off("connect", yes);
        socket.off("connect_error", no);
        resolve(ok);
      };
      const yes = () => done(true);
      const no = () => done(false);
      const timer = setTimeout(no, ms);
      socket.on("connect", yes);
      socket.on("connect_error", no);
    });
  }

  async function subscribeOn(socket, job) {
    try {
      const ack = await socket.timeout(4000).emitWithAck("subscribe", { job_id: job.id });
      job.live = Boolean(ack?.ok);
      if (ack?.snapshot) onProgress(ack.snapshot);
    } catch {
      job.live = false;
    }
  }

  // Subscribe before the POST so no update is missed; never fails the job itself.
  async function subscribe(job) {
    const socket = socketFor(key());
    if (socket && (await whenConnected(socket, 4000))) await subscribeOn(socket, job);
    if (!job.live) renderProgress({ status: "queued", percent: 0 }, "Live progress unavailable");
  }

  function unsubscribe(job) {
    if (job?.live && state.socket?.connected) {
      state.socket.emit("unsubscribe", { job_id: job.id });
    }
  }

  function onProgress(p) {
    const job = state.job;
    if (!job || p?.job_id !== job.id || !(p.seq > job.lastSeq)) return; // stale or not ours
    job.lastSeq = p.seq;
    renderProgress(p);
  }

  function renderProgress(p, label) {
    const bar = $("progress");
    const pct = p.percent == null ? null : Math.max(0, Math.min(100, p.percent));
    bar.dataset.status = p.status;
    bar.dataset.seq = String(p.seq || 0);
    bar.classList.toggle("indeterminate", pct == null);
    bar.setAttribute("aria-valuenow", String(Math.round(pct ?? 0)));
    bar.firstElementChild.style.width = `${pct ?? 0}%`;
    if (!label) {
      const parts = [];
      if (p.status === "succeeded") parts.push("Done");
      else if (p.status === "failed") parts.push("Failed");
      else if (p.status === "cancelled") parts.push("Cancelled");
      else if (p.status === "queued") {
        parts.push(p.queue_position != null ? `Queued (#${p.queue_position})` : "Queued");
        if (p.eta_s != null) parts.push(`~${Math.ceil(p.eta_s)} s`);
      }
      if (pct != null) parts.push(`${Math.round(pct)} %${p.estimated ? " (est.)" : ""}`);
      if (p.status === "running" && p.total_steps) parts.push(`step ${p.step}/${p.total_steps}`);
      if (p.status === "running" && p.eta_s != null) parts.push(`~${Math.ceil(p.eta_s)} s left`);
      label = parts.join(" · ");
    }
    $("progress-label").textContent = label;
  }

  // ---------- requests ----------
  function send(job, params, stream, partials) {
    const headers = { ...authHeaders(), "X-Job-Id": job.id };
    const signal = job.abort.signal;
    if (job.mode === "edit") {
      const form = new FormData();
      form.append("image", state.image, state.image.name || "image.png");
      const mask = $("mask").files[0];
      if (mask) form.append("mask", mask, mask.name);
      if (job.model) form.append("model", job.model);
      form.append("prompt", job.prompt);
      for (const [name, value] of Object.entries(params)) form.append(name, String(value));
      if (stream) {
        form.append("stream", "true");
        form.append("partial_images", String(partials));
      }
      return fetch(`${API}/images/edits`, { method: "POST", headers, body: form, signal });
    }
    const body = { prompt: job.prompt, ...params };
    if (job.model) body.model = job.model;
    if (stream) Object.assign(body, { stream: true, partial_images: partials });
    return fetch(`${API}/images/generations`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  }

  // Server-Sent Events from a fetch body: `event:`/`data:` lines, CR, LF or CRLF endings, lines
  // split anywhere across chunks. Each complete event is handed to onEvent (awaited, in order).
  async function readSSE(res, onEvent) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const events = [];
    let pending = [];
    let lastCR = false;
    let event = { type: "", data: [] };
    const line = (text) => {
      if (text === "") {
        if (event.data.length) events.push({ type: event.type || "message", data: event.data.join("\n") });
        event = { type: "", data: [] };
        return;
      }
      if (text[0] === ":") return; // comment (keep-alive)
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "data") event.data.push(value);
      else if (field === "event") event.type = value;
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let start = 0;
        for (let i = 0; i < value.length; i++) {
          const c = value.charCodeAt(i);
          if (c === 10 && lastCR && i === start) { start = i + 1; lastCR = false; continue; } // CRLF
          lastCR = false;
          if (c === 10 || c === 13) {
            pending.push(value.slice(start, i));
            line(pending.join(""));
            pending = [];
            start = i + 1;
            lastCR = c === 13;
          }
        }
        if (start < value.length) pending.push(value.slice(start)); // joined once: linear
        for (const e of events.splice(0)) await onEvent(e);
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    // An event not ended by a blank line when the stream closes is discarded (as the spec says).
  }

  async function readStream(res, job) {
    if (!(res.headers.get("content-type") || "").startsWith("text/event-stream")) {
      return readJson(res, job);
    }
    let completed = 0;
    await readSSE(res, async ({ type, data }) => {
      let payload;
      try { payload = JSON.parse(data); } catch { return; }
      const kind = payload.type || type;
      if (type === "error" || kind === "error") {
        throw new Error(payload.error?.message || "The stream failed.");
      }
      if (kind.endsWith(".partial_image")) {
        await drawPartial(payload);
        $("meta").textContent = `Partial image ${(payload.partial_image_index ?? 0) + 1}…`;
      } else if (kind.endsWith(".completed")) {
        await addImage(job, payload, completed++, payload);
      }
    });
    if (!completed) throw new Error("The stream ended before the image was complete.");
    finishMeta(job, {});
  }

  async function readJson(res, job) {
    const body = await res.json();
    const items = body.data || [];
    for (let i = 0; i < items.length; i++) await addImage(job, items[i], i, body);
    if (!items.length) throw new Error("The gateway returned no image.");
    finishMeta(job, body);
  }

  async function drawPartial(payload) {
    const blob = b64ToBlob(payload.b64_json, MIME[payload.output_format] || "image/png");
    const bitmap = await createImageBitmap(blob);
    const canvas = $("partial");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    canvas.hidden = false;
    $("placeholder").hidden = true;
    canvas.dataset.drawn = String(Number(canvas.dataset.drawn) + 1);
  }

  async function addImage(job, item, index, info) {
    const format = info.output_format || "png";
    let src = item.url;
    const blob = item.b64_json ? b64ToBlob(item.b64_json, MIME[format] || "image/png") : null;
    if (blob) {
      src = URL.createObjectURL(blob);
      state.urls.push(src);
    }
    if (!src) return;
    const img = el("img", { src, alt: job.prompt });
    const link = el("a", { href: src, download: `${job.id.slice(0, 8)}-${index + 1}.${format}`,
                           textContent: "Download" });
    const caption = el("figcaption", {}, link, info.size ? ` · ${info.size}` : "");
    if (blob && !$("mode-edit").disabled) {
      const reuse = el("button", { type: "button", textContent: "Edit this image" });
      reuse.addEventListener("click", () => {
        setMode("edit");
        setImage(new File([blob], link.download, { type: blob.type }));
      });
      caption.append(" · ", reuse);
    }
    $("images").append(el("figure", {}, img, caption));
    try { await img.decode(); } catch { /* shown broken; the error is the browser's */ }
    $("partial").hidden = true;
    $("placeholder").hidden = true;
    if (!job.thumb) job.thumb = thumbnail(img);
  }

  function thumbnail(img) {
    try {
      const size = 80;
      const canvas = el("canvas", { width: size, height: size });
      const scale = Math.max(size / img.naturalWidth, size / img.naturalHeight);
      const w = img.naturalWidth * scale;
      const h = img.naturalHeight * scale;
      canvas.getContext("2d").drawImage(img, (size - w) / 2, (size - h) / 2, w, h);
      return canvas.toDataURL("image/jpeg", 0.7);
    } catch {
      return null; // a cross-origin URL taints the canvas
    }
  }

  function finishMeta(job, body) {
    const seconds = ((performance.now() - job.t0) / 1000).toFixed(1);
    const parts = [body.model || job.model, `${seconds} s`];
    if (typeof body.cost === "number") parts.push(`$${body.cost.toFixed(4)}`);
    parts.push(`job ${job.id}`);
    $("meta").textContent = parts.filter(Boolean).join(" · ");
  }

  // ---------- a job from the form ----------
  function resetOutput() {
    for (const url of state.urls.splice(0)) URL.revokeObjectURL(url);
    $("images").replaceChildren();
    const canvas = $("partial");
    canvas.hidden = true;
    canvas.dataset.drawn = "0";
    $("placeholder").hidden = false;
    $("meta").textContent = "";
    showError("");
  }

  async function run(event) {
    event.preventDefault();
    if (state.job && !state.job.done) { state.job.abort.abort(); return; } // the button cancels
    const prompt = $("prompt").value.trim();
    if (!prompt) { showError("Write a prompt first."); $("prompt").focus(); return; }
    if (state.mode === "edit" && !state.image) {
      showError("Choose, drop or paste the image to edit.");
      return;
    }
    const stream = $("stream").checked;
    const partials = Math.max(0, Math.min(Number($("partial-images").max) || 3,
                                          Math.trunc(Number($("partial-images").value) || 0)));
    const params = collectParams();
    unsubscribe(state.job);
    const job = { id: uuid4(), mode: state.mode, model: $("model").value, prompt, lastSeq: 0,
                  live: false, done: false, abort: new AbortController(), t0: performance.now(),
                  thumb: null };
    state.job = job;
    resetOutput();
    $("submit").textContent = "Cancel";
    renderProgress({ status: "queued", percent: 0 }, "Connecting…");
    let error = null;
    try {
      await subscribe(job);
      const res = await send(job, params, stream, partials);
      if (!res.ok) throw await errorFrom(res);
      await (stream ? readStream(res, job) : readJson(res, job));
      if (!job.live) renderProgress({ status: "succeeded", percent: 100 }, "Done (no live progress)");
    } catch (err) {
      error = describe(err);
      showError(error);
      const status = err?.name === "AbortError" ? "cancelled" : "failed";
      const bar = $("progress");
      if (!["failed", "cancelled"].includes(bar.dataset.status)) {
        renderProgress({ status, percent: Number(bar.getAttribute("aria-valuenow")), seq: job.lastSeq },
                       status === "cancelled" ? "Cancelled" : "Failed");
      }
    } finally {
      job.done = true;
      setMode(state.mode);
      remember(job, error);
    }
  }

  // ---------- history ----------
  function remember(job, error) {
    const entry = { id: job.id, mode: job.mode, model: job.model, prompt: job.prompt,
                    when: Date.now(), error, thumb: job.thumb };
    save(HISTORY_STORE, [entry, ...load(HISTORY_STORE, [])].slice(0, HISTORY_MAX));
    renderHistory();
  }

  function ago(ms) {
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 60) return "just now";
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(ms).toLocaleDateString();
  }

  function renderHistory() {
    const items = load(HISTORY_STORE, []);
    $("history").replaceChildren(...items.map((h) => {
      const thumb = h.thumb ? el("img", { src: h.thumb, alt: "" }) : el("div", { className: "thumb" });
      const status = h.error ? h.error : "ok";
      const li = el("li", { className: h.error ? "failed" : "", title: `${h.prompt}\njob ${h.id}` },
        thumb,
        el("div", { className: "what" }, el("b", { textContent: h.prompt }),
           el("small", { textContent: `${h.model || "default"} · ${h.mode} · ${status} · ${ago(h.when)}` })));
      li.addEventListener("click", () => {
        if (state.models.has(h.model)) { $("model").value = h.model; modelChanged(); }
        setMode(h.mode === "edit" && !$("mode-edit").disabled ? "edit" : "generate");
        $("prompt").value = h.prompt;
      });
      return li;
    }));
  }

  // ---------- wiring ----------
  let keyTimer = 0;
  $("key").value = load(KEY_STORE, "");
  $("key").addEventListener("input", () => {
    clearTimeout(keyTimer);
    keyTimer = setTimeout(() => { save(KEY_STORE, key()); loadModels(); }, 350);
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    clearTimeout(keyTimer);
    save(KEY_STORE, key());
    loadModels();
  });
  $("forget-key").addEventListener("click", () => {
    $("key").value = "";
    localStorage.removeItem(KEY_STORE);
    loadModels();
  });
  $("model").addEventListener("change", modelChanged);
  $("mode-generate").addEventListener("click", () => setMode("generate"));
  $("mode-edit").addEventListener("click", () => setMode("edit"));
  $("stream").addEventListener("change", () => { $("partial-images").disabled = !$("stream").checked; });
  $("image").addEventListener("change", () => setImage($("image").files[0]));
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    setImage(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (!file || $("mode-edit").disabled) return;
    e.preventDefault();
    setMode("edit");
    setImage(file);
  });
  $("clear-history").addEventListener("click", () => { save(HISTORY_STORE, []); renderHistory(); });
  $("form").addEventListener("submit", run);

  setMode("generate");
  renderHistory();
  loadModels();
  // For tests and the curious: the SSE reader on its own.
  window.imageProxyPlayground = Object.freeze({ readSSE });
})();
