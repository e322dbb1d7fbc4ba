// The card preview: builds a hook request from an example or pasted Bundle, fires it at the real CDS endpoint with a
// locally signed JWT, renders the cards as an EHR sidebar would, and sends real feedback when a button is clicked.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let examples = [];

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

  async function init() {
    const services = (await json("/preview/services")).services;
    for (const s of services) {
      const opt = document.createElement("option");
      opt.value = s.id; opt.textContent = `${s.title} (${s.hook})`; opt.dataset.hook = s.hook;
      $("service").appendChild(opt);
    }
    examples = (await json("/preview/examples")).examples;
    for (const e of examples) {
      const opt = document.createElement("option");
      opt.value = e.id; opt.textContent = e.label;
      $("example").appendChild(opt);
    }
    $("example").addEventListener("change", loadExample);
    $("upload").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (file) { $("bundle").value = await file.text(); $("example").value = ""; }
    });
    $("fire").addEventListener("click", fire);
    status("Ready.");
  }

  async function loadExample() {
    const id = $("example").value;
    if (!id) return;
    const bundle = await json(`/preview/examples/${encodeURIComponent(id)}`);
    $("bundle").value = JSON.stringify(bundle, null, 1);
    const ex = examples.find((e) => e.id === id);
    $("encounter").value = (ex && ex.encounterId) || "";
  }

  async function fire() {
    const service = $("service").value;
    let bundle;
    try { bundle = JSON.parse($("bundle").value); } catch (e) { status("The Bundle is not valid JSON.", true); return; }
    status("Firing…");
    try {
      const request = await json("/preview/request", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ service, bundle, encounterId: $("encounter").value || null }) });
      const jwt = await token(service, "call");
      const started = performance.now();
      const response = await json(`/cds-services/${encodeURIComponent(service)}`, { method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": `Bearer ${jwt}` },
        body: JSON.stringify(request) });
      $("raw").textContent = JSON.stringify(response, null, 2);
      $("patient-title").textContent = `Patient ${request.context.patientId}`;
      renderCards(service, response.cards || []);
      status(`${(response.cards || []).length} card(s) in ${Math.round(performance.now() - started)} ms.`);
    } catch (err) {
      $("raw").textContent = err.body ? JSON.stringify(err.body, null, 2) : String(err);
      $("cards").innerHTML = "";
      status(err.message, true);
    }
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderCards(service, cards) {
    const box = $("cards");
    box.innerHTML = "";
    if (!cards.length) { box.appendChild(el("p", "muted", "The service returned no cards.")); return; }
    for (const card of cards) {
      const node = el("article", `card indicator-${card.indicator}`);
      node.dataset.uuid = card.uuid || "";
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
      if (card.overrideReasons && card.overrideReasons.length) {
        const override = el("div", "override");
        const select = el("select");
        select.setAttribute("aria-label", "Override reason");
        for (const reason of card.overrideReasons) {
          const opt = el("option", null, reason.display);
          opt.value = reason.code;
          select.appendChild(opt);
        }
        const dismiss = el("button", "dismiss", "Dismiss");
        dismiss.type = "button";
        dismiss.addEventListener("click", () => {
          const reason = card.overrideReasons.find((r) => r.code === select.value);
          sendFeedback(service, card, { outcome: "overridden", overrideReason: { reason } }, feedbackStatus);
        });
        override.appendChild(select);
        override.appendChild(dismiss);
        node.appendChild(override);
      }
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
      if (card.source.icon) { const img = el("img"); img.src = card.source.icon; img.alt = ""; source.appendChild(img); }
      source.appendChild(document.createTextNode(card.source.label));
      node.appendChild(source);
      node.appendChild(feedbackStatus);
      box.appendChild(node);
    }
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
