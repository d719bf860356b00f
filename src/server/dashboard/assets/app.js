// pacer's dashboard: live updates over server-sent events, confirmed
// actions, and the history loaded after the page. Pages are rendered by
// the server and work without this script; it only keeps them fresh.
"use strict";
(function () {
  const main = () => document.getElementById("main");
  const live = () => document.getElementById("live");
  let seq = Number(document.body.dataset.seq || 0);
  let pending = false, last = 0, timer = null;

  function say(text) {
    const t = document.getElementById("toast");
    t.textContent = text;
    clearTimeout(say.t);
    say.t = setTimeout(() => { t.textContent = ""; }, 8000);
  }

  // Replaces <main> with the server's fresh rendering of the same URL,
  // at most once a second; never while a dialog is open or a field of
  // <main> has the focus (a person is typing or choosing).
  async function refresh() {
    timer = null;
    const active = document.activeElement;
    const busy = document.getElementById("confirm").open ||
      (active && main().contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
    if (busy) { timer = setTimeout(refresh, 1000); return; }
    last = Date.now();
    pending = false;
    try {
      const r = await fetch(location.href, { headers: { "X-Pacer-Fragment": "1" }, credentials: "same-origin" });
      if (!r.ok) return;
      const s = Number(r.headers.get("X-Pacer-Seq") || 0);
      const html = await r.text();
      if (s && s < seq) return;
      if (s) seq = s;
      const open = [...main().querySelectorAll("details[open] > summary")].map((e) => e.textContent);
      main().innerHTML = html;
      main().querySelectorAll("details > summary").forEach((e) => {
        if (open.includes(e.textContent)) e.parentElement.open = true;
      });
      loadHistory();
      live().textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (e) { /* the next event tries again */ }
  }

  function changed(n) {
    if (n && n <= seq) return;
    pending = true;
    if (timer) return;
    timer = setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last)));
  }

  function connect() {
    if (!window.EventSource) return;
    const es = new EventSource("/ui/events");
    es.addEventListener("changed", (e) => changed(Number(e.data)));
    es.onopen = () => { live().textContent = "live"; live().classList.add("on"); };
    es.onerror = () => { live().textContent = "reconnecting…"; live().classList.remove("on"); };
  }

  async function loadHistory() {
    const el = document.querySelector("[data-history-src]");
    if (!el || el.dataset.loaded) return;
    el.dataset.loaded = "1";
    try {
      const r = await fetch(el.dataset.historySrc, { credentials: "same-origin" });
      el.innerHTML = await r.text();
    } catch (e) {
      el.textContent = "The history could not be read.";
    }
    el.removeAttribute("aria-busy");
  }

  function confirmThen(text, run) {
    const d = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    d.returnValue = "";
    d.onclose = () => { if (d.returnValue === "ok") run(); };
    d.showModal();
    document.getElementById("confirm-cancel").focus();
  }

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await r.json(); } catch (e) { /* not JSON */ }
    return { ok: r.ok, status: r.status, error: answer.error };
  }

  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const { action, env, app, commit } = b.dataset;
    if (action === "retry") {
      confirmThen(`Retry ${app} in ${env}? pacer deploys the current commit again.`, async () => {
        const r = await post("/api/v1/retry", { env, app });
        say(r.ok ? `Retry of ${app} queued.` : `Retry refused (${r.status}): ${r.error || ""}`);
      });
    } else if (action === "apply") {
      confirmThen(`Apply the plan of ${env} at ${commit.slice(0, 12)}? Marathon changes now.`, async () => {
        const r = await post("/api/v1/apply", { env, commit });
        say(r.ok ? `Apply of ${env} queued.` : `Apply refused (${r.status}): ${r.error || ""}`);
      });
    }
  });

  document.addEventListener("change", (ev) => {
    if (ev.target.matches("select[data-autosubmit]")) ev.target.form.submit();
  });

  loadHistory();
  connect();
})();
