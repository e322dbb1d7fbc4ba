// The details page's what-if controls: post a scenario (or edited inputs) to this page's /what-if endpoint and show
// the recomputed estimate next to the current value. Served from this origin; the page allows no inline script (CSP).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const endpoint = window.location.pathname.replace(/\/+$/, "") + "/what-if";

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function showError(message) {
    const box = $("what-if-error");
    box.textContent = message;
    box.hidden = false;
    $("what-if-result").hidden = true;
  }

  function showResult(r) {
    $("what-if-error").hidden = true;
    const box = $("what-if-result");
    box.replaceChildren();
    const head = el("p");
    head.append(el("span", "Estimate", "badge"), " ",
      el("span", r.scenario ? r.scenario : "With the changed inputs", "scenario-label"), ": ");
    const value = el("span", `${r.primary.text} (${r.primary.category})`, "estimate");
    value.id = "what-if-value";
    head.append(value);
    if (r.current) head.append(el("span", ` — now ${r.current.text} (${r.current.category})`, "muted"));
    box.append(head);

    const changed = el("p", "Changed: " + r.changed.map((c) => `${c.label} ${c.from_text} → ${c.to_text}`).join("; "),
      "muted");
    box.append(changed);

    const table = el("table");
    const thead = el("thead");
    const hr = el("tr");
    for (const h of ["Output", "Now", "Estimate"]) hr.append(el("th", h));
    thead.append(hr);
    const tbody = el("tbody");
    for (const o of r.outputs) {
      const tr = el("tr");
      tr.append(el("td", o.label), el("td", o.current_text || "—"),
        el("td", o.withheld ? `not given (${o.withheld})` : o.text));
      tbody.append(tr);
    }
    table.append(thead, tbody);
    box.append(table);
    if (r.scenario_note) box.append(el("p", "Assumes: " + r.scenario_note, "muted"));
    box.append(el("p", r.note, "muted"));
    box.hidden = false;
  }

  async function post(body) {
    let resp;
    try {
      resp = await fetch(endpoint, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body), credentials: "omit", cache: "no-store" });
    } catch (e) {
      showError("The service could not be reached.");
      return;
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const issue = data && data.issue && data.issue[0];
      showError(issue ? issue.diagnostics : (resp.status === 404 ? "This link has expired." : `HTTP ${resp.status}`));
      return;
    }
    showResult(data);
  }

  function edited() {
    const set = {};
    for (const input of document.querySelectorAll("#what-if-edit [name]")) {
      if (input.value === "" || input.value === input.dataset.current) continue;
      const n = Number(input.value);
      if (!Number.isFinite(n)) { showError(`${input.name}: not a number`); return null; }
      set[input.name] = n;
    }
    return set;
  }

  function init() {
    for (const button of document.querySelectorAll("button.scenario")) {
      button.addEventListener("click", () => {
        for (const b of document.querySelectorAll("button.scenario")) b.setAttribute("aria-pressed", "false");
        button.setAttribute("aria-pressed", "true");
        post({ scenario: button.dataset.scenario });
      });
    }
    const run = $("what-if-run");
    if (run) {
      run.addEventListener("click", () => {
        const set = edited();
        if (set === null) return;
        if (Object.keys(set).length === 0) { showError("Change at least one input first."); return; }
        for (const b of document.querySelectorAll("button.scenario")) b.setAttribute("aria-pressed", "false");
        post({ set });
      });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
