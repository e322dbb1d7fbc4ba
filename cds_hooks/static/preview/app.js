// The card preview: builds a hook request from an example or pasted Bundle, fires it at the real CDS endpoint with a
// locally signed JWT (one service, or every service registered for a hook, as an EHR does), shows a patient banner
// and renders the cards as an EHR sidebar would, and sends real feedback when a button is clicked. Patient details
// are shown in this page only: nothing here logs or sends them anywhere but this service's own endpoints.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const SEVERITY = { critical: 0, warning: 1, info: 2 };
  let examples = [];
  let services = [];

  async function json(url, options) {
    const resp = await fetch(url, options);
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!resp.ok) {
      const issue = body && body.issue && body.issue[0];
      const reason = issue ? issue.diagnostics : (text || resp.statusText);
      const err = new Error(`HTTP ${resp.status}: ${reason}`);
      err.body = body;
      throw err;
    }
    return body;
  }

  async function token(service, purpose) {
    const body = await json("/preview/token", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ service, purpose }) });
    return body.token;
  }

  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function init() {
    services = (await json("/preview/services")).services;
    const hooks = [];
    for (const s of services) {
      const opt = el("option", null, `${s.title} (${s.hook})`);
      opt.value = s.id; opt.dataset.hook = s.hook;
      $("service").appendChild(opt);
      if (!hooks.includes(s.hook)) hooks.push(s.hook);
    }
    for (const hook of hooks) {
      const opt = el("option", null, `${hook} (${services.filter((s) => s.hook === hook).length} services)`);
      opt.value = hook;
      $("hook").appendChild(opt);
    }
    syncHook();
    examples = (await json("/preview/examples")).examples;
    for (const e of examples) {
      const opt = el("option", null, e.label);
      opt.value = e.id;
      $("example").appendChild(opt);
    }
    $("service").addEventListener("change", syncHook);
    $("example").addEventListener("change", () => loadExample().catch((e) => status(e.message, true)));
    $("upload").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (file) { $("bundle").value = await file.text(); $("example").value = ""; updateBanner(); }
    });
    let pending = null;
    $("bundle").addEventListener("input", () => { clearTimeout(pending); pending = setTimeout(updateBanner, 300); });
    $("fire").addEventListener("click", fire);
    $("fire-all").addEventListener("click", fireAll);
    status("Ready.");
  }

  function syncHook() {
    const opt = $("service").selectedOptions[0];
    if (opt && opt.dataset.hook) $("hook").value = opt.dataset.hook;
  }

  async function loadExample() {
    const id = $("example").value;
    if (!id) return;
    const bundle = await json(`/preview/examples/${encodeURIComponent(id)}`);
    $("bundle").value = JSON.stringify(bundle, null, 1);
    const ex = examples.find((e) => e.id === id);
    $("encounter").value = (ex && ex.encounterId) || "";
    updateBanner();
  }

  // ---- patient banner -------------------------------------------------------------------------------------------
  function patientOf(bundle) {
    if (bundle && bundle.resourceType === "Patient") return bundle;
    const entries = bundle && Array.isArray(bundle.entry) ? bundle.entry : [];
    const patients = entries.map((e) => e && e.resource).filter((r) => r && r.resourceType === "Patient");
    return patients.length === 1 ? patients[0] : null;
  }

  function nameOf(patient) {
    const names = Array.isArray(patient.name) ? patient.name.filter((n) => n && typeof n === "object") : [];
    const name = names.find((n) => n.use === "official") || names.find((n) => n.use === "usual") || names[0];
    if (!name) return "(no name)";
    if (name.text) return String(name.text);
    const given = Array.isArray(name.given) ? name.given : [];
    return [...given, name.family].filter(Boolean).join(" ") || "(no name)";
  }

  // Age in whole years on `on` (a Date) from a FHIR date; "about" when only the year or month of birth is known.
  function ageOf(birthDate, on) {
    const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/.exec(String(birthDate || ""));
    if (!m) return null;
    const [y, mo, d] = [Number(m[1]), m[2] ? Number(m[2]) : null, m[3] ? Number(m[3]) : null];
    let years = on.getFullYear() - y;
    if (mo === null) return `about ${years} y`;
    const month = on.getMonth() + 1;
    if (month < mo || (month === mo && d !== null && on.getDate() < d)) years -= 1;
    return d === null ? `about ${years} y` : `${years} y`;
  }

  function updateBanner() {
    const banner = $("banner");
    banner.textContent = "";
    let patient = null;
    try { patient = patientOf(JSON.parse($("bundle").value)); } catch (e) { patient = null; }
    if (!patient) {
      banner.appendChild(el("span", "muted", $("bundle").value.trim() ? "No single Patient in this Bundle."
        : "No patient loaded."));
      return;
    }
    const ended = patient.deceasedDateTime ? new Date(String(patient.deceasedDateTime).slice(0, 10)) : null;
    const age = ageOf(patient.birthDate, ended && !isNaN(ended) ? ended : new Date());
    const sex = patient.gender ? patient.gender.charAt(0).toUpperCase() + patient.gender.slice(1) : "Sex unknown";
    banner.appendChild(el("span", "name", nameOf(patient)));
    banner.appendChild(el("span", "age", age || "age unknown"));
    banner.appendChild(el("span", "sex", sex));
    if (patient.birthDate) banner.appendChild(el("span", "dob", `DOB ${patient.birthDate}`));
    if (patient.deceasedBoolean === true || patient.deceasedDateTime) banner.appendChild(el("span", "deceased", "Deceased"));
    if (patient.id) banner.appendChild(el("span", "pid", `id ${patient.id}`));
  }

  // ---- firing ---------------------------------------------------------------------------------------------------
  function readBundle() {
    try { return JSON.parse($("bundle").value); } catch (e) { status("The Bundle is not valid JSON.", true); return null; }
  }

  async function call(service, bundle, hookInstance) {
    const request = await json("/preview/request", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ service, bundle, encounterId: $("encounter").value || null, hookInstance }) });
    const jwt = await token(service, "call");
    const response = await json(`/cds-services/${encodeURIComponent(service)}`, { method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": `Bearer ${jwt}` },
      body: JSON.stringify(request) });
    return { request, response };
  }

  async function fire() {
    const service = $("service").value;
    const bundle = readBundle();
    if (!bundle) return;
    updateBanner();
    status("Firing…");
    try {
      const started = performance.now();
      const { request, response } = await call(service, bundle, null);
      $("raw").textContent = JSON.stringify(response, null, 2);
      $("patient-title").textContent = `Patient ${request.context.patientId}`;
      const cards = response.cards || [];
      renderCards(cards.map((card) => ({ service, card })), []);
      status(`${cards.length} card(s) in ${Math.round(performance.now() - started)} ms.`);
    } catch (err) {
      $("raw").textContent = err.body ? JSON.stringify(err.body, null, 2) : String(err);
      $("cards").innerHTML = "";
      status(err.message, true);
    }
  }

  // Every service registered for the chosen hook, called together with one hookInstance, as an EHR does.
  async function fireAll() {
    const hook = $("hook").value;
    const targets = services.filter((s) => s.hook === hook).map((s) => s.id);
    const bundle = readBundle();
    if (!bundle || !targets.length) return;
    updateBanner();
    status(`Firing ${targets.length} ${hook} services…`);
    const hookInstance = window.crypto && crypto.randomUUID ? crypto.randomUUID() : null;
    const started = performance.now();
    const results = await Promise.all(targets.map((service) => call(service, bundle, hookInstance)
      .then((r) => ({ service, ...r }), (error) => ({ service, error }))));
    const items = [];
    const errors = [];
    const raw = {};
    for (const r of results) {
      if (r.error) {
        errors.push({ service: r.service, message: r.error.message });
        raw[r.service] = r.error.body || String(r.error);
        continue;
      }
      raw[r.service] = r.response;
      $("patient-title").textContent = `Patient ${r.request.context.patientId}`;
      for (const card of r.response.cards || []) items.push({ service: r.service, card });
    }
    items.sort((a, b) => (SEVERITY[a.card.indicator] ?? 3) - (SEVERITY[b.card.indicator] ?? 3));
    $("raw").textContent = JSON.stringify(raw, null, 2);
    renderCards(items, errors);
    const answered = new Set(items.map((i) => i.service)).size;
    status(`${items.length} card(s) from ${answered} of ${targets.length} ${hook} services in ` +
      `${Math.round(performance.now() - started)} ms` + (errors.length ? `; ${errors.length} failed.` : "."),
      errors.length > 0);
  }

  // ---- cards ----------------------------------------------------------------------------------------------------
  function renderCards(items, errors) {
    const box = $("cards");
    box.innerHTML = "";
    for (const e of errors) box.appendChild(el("p", "error service-error", `${e.service}: ${e.message}`));
    if (!items.length) { box.appendChild(el("p", "muted", "The service returned no cards.")); return; }
    for (const { service, card } of items) box.appendChild(renderCard(service, card));
  }

  function renderCard(service, card) {
    const node = el("article", `card indicator-${card.indicator}`);
    node.dataset.uuid = card.uuid || "";
    node.dataset.service = service;
    const summary = el("div", "summary");
    summary.appendChild(el("span", "badge", card.indicator));
    summary.appendChild(document.createTextNode(card.summary));
    node.appendChild(summary);
    if (card.detail) {
      const detail = el("div", "detail");
      detail.innerHTML = window.cdsMarkdown.render(card.detail); // renderer escapes all HTML from the card
      node.appendChild(detail);
    }
    const feedbackStatus = el("div", "feedback-status");
    if (card.suggestions && card.suggestions.length) {
      const actions = el("div", "actions");
      for (const sug of card.suggestions) {
        const btn = el("button", "accept" + (sug.isRecommended ? " recommended" : ""), sug.label);
        btn.type = "button";
        btn.addEventListener("click", () => sendFeedback(service, card, { outcome: "accepted",
          acceptedSuggestions: [{ id: sug.uuid }] }, feedbackStatus));
        actions.appendChild(btn);
      }
      node.appendChild(actions);
    }
    if (card.overrideReasons && card.overrideReasons.length) node.appendChild(overrideForm(service, card, feedbackStatus));
    if (card.links && card.links.length) {
      const links = el("div", "links");
      for (const link of card.links) {
        if (!/^https?:\/\//.test(link.url)) continue;
        const a = el("a", null, (link.type === "smart" ? "↗ SMART app: " : "↗ ") + link.label);
        a.href = link.url; a.target = "_blank"; a.rel = "noopener noreferrer";
        links.appendChild(a);
      }
      node.appendChild(links);
    }
    const source = el("div", "source");
    if (card.source && card.source.icon) { const img = el("img"); img.src = card.source.icon; img.alt = ""; source.appendChild(img); }
    source.appendChild(document.createTextNode((card.source && card.source.label) || service));
    source.appendChild(el("span", "service-id", service));
    node.appendChild(source);
    node.appendChild(feedbackStatus);
    return node;
  }

  // Dismissing a card needs a reason the clinician chose: the list starts on a placeholder that cannot be sent.
  function overrideForm(service, card, feedbackStatus) {
    const override = el("div", "override");
    const select = el("select");
    select.setAttribute("aria-label", "Override reason");
    select.required = true;
    const placeholder = el("option", null, "Choose a reason to dismiss…");
    placeholder.value = ""; placeholder.disabled = true; placeholder.selected = true;
    select.appendChild(placeholder);
    for (const reason of card.overrideReasons) {
      const opt = el("option", null, reason.display);
      opt.value = reason.code;
      select.appendChild(opt);
    }
    select.value = "";
    const dismiss = el("button", "dismiss", "Dismiss");
    dismiss.type = "button";
    dismiss.disabled = true;
    dismiss.title = "Choose an override reason first";
    select.addEventListener("change", () => { dismiss.disabled = !select.value; dismiss.title = ""; });
    dismiss.addEventListener("click", () => {
      const reason = card.overrideReasons.find((r) => r.code === select.value);
      if (!reason) {
        feedbackStatus.textContent = "Choose an override reason first.";
        feedbackStatus.className = "feedback-status error";
        return;
      }
      sendFeedback(service, card, { outcome: "overridden", overrideReason: { reason } }, feedbackStatus);
    });
    override.appendChild(select);
    override.appendChild(dismiss);
    return override;
  }

  async function sendFeedback(service, card, item, statusNode) {
    try {
      const jwt = await token(service, "feedback");
      const body = { feedback: [Object.assign({ card: card.uuid, outcomeTimestamp: new Date().toISOString() }, item)] };
      await json(`/cds-services/${encodeURIComponent(service)}/feedback`, { method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": `Bearer ${jwt}` }, body: JSON.stringify(body) });
      statusNode.textContent = `Feedback stored (${item.outcome}).`;
      statusNode.className = "feedback-status ok";
    } catch (err) {
      statusNode.textContent = `Feedback failed: ${err.message}`;
      statusNode.className = "feedback-status error";
    }
  }

  document.addEventListener("DOMContentLoaded", () => init().catch((e) => status(e.message, true)));
})();
