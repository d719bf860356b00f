// pacer's dashboard: the session, live updates over server-sent events,
// confirmed actions, and the history loaded after the page. Pages are
// rendered by the server and read without this script (the public view);
// it signs in, keeps them fresh and acts.
"use strict";
(function () {
  const KEY = "pacer-session";
  const $ = (id) => document.getElementById(id);
  const main = () => $("main");
  let seq = Number(document.body.dataset.seq || 0);
  let last = 0, timer = null, events = null;

  // The session lives in this tab's sessionStorage (its own origin and
  // port), never in a cookie: see src/server/session.rs.
  const session = () => sessionStorage.getItem(KEY);
  const auth = () => (session() ? { Authorization: `Bearer ${session()}` } : {});

  function say(text) {
    const t = $("toast");
    t.textContent = text;
    clearTimeout(say.t);
    say.t = setTimeout(() => { t.textContent = ""; }, 8000);
  }

  // Who the page speaks to: the pill, and signing in or out.
  function showLevel(level) {
    const who = document.querySelector(".who");
    const pill = who.querySelector(".pill");
    const names = { admin: "admin", read: "read-only", anonymous: "public view" };
    pill.textContent = names[level] || names.anonymous;
    pill.className = "pill" + (level === "admin" ? " admin" : level === "anonymous" ? " anon" : "");
    const signedIn = level === "admin" || level === "read";
    if ($("signin-link")) $("signin-link").hidden = signedIn;
    $("signout").hidden = !signedIn;
  }

  function ended() {
    sessionStorage.removeItem(KEY);
    showLevel("anonymous");
    say("Your session ended (expired, or a token changed): sign in again.");
  }

  // Replaces <main> with the server's rendering of the same URL for this
  // session. Live changes come at most once a second, never while a dialog
  // is open or a field of <main> has the focus (a person is busy there).
  async function refresh(now) {
    timer = null;
    const active = document.activeElement;
    const busy = $("confirm").open ||
      (active && main().contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
    if (busy && !now) { timer = setTimeout(refresh, 1000); return; }
    last = Date.now();
    try {
      const r = await fetch(location.href, {
        headers: { "X-Pacer-Fragment": "1", ...auth() }, credentials: "omit",
      });
      if (r.status === 401 && session()) { ended(); return refresh(true); }
      if (!r.ok) return;
      const s = Number(r.headers.get("X-Pacer-Seq") || 0);
      const html = await r.text();
      if (s && s < seq && !now) return;
      if (s) seq = s;
      // What a person opened or read stays: open <details>, the history.
      const open = [...main().querySelectorAll("details[open] > summary")].map((e) => e.textContent);
      const history = $("history");
      main().innerHTML = html;
      main().querySelectorAll("details > summary").forEach((e) => {
        if (open.includes(e.textContent)) e.parentElement.open = true;
      });
      const fresh = $("history");
      if (history && fresh && history.dataset.loaded && history.dataset.historySrc === fresh.dataset.historySrc) {
        fresh.replaceWith(history);
      }
      showLevel(r.headers.get("X-Pacer-Level") || "anonymous");
      document.body.classList.remove("upgrading");
      loadHistory();
      if (events) $("live").textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (e) { /* the next event tries again */ }
  }

  function changed(n) {
    if (n && n <= seq) return;
    if (timer) return;
    timer = setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last)));
  }

  // One event stream while the tab is seen: a hidden tab gives its
  // connection back (browsers hold few per server) and catches up when
  // shown again.
  function connect() {
    if (!window.EventSource || events || document.hidden) return;
    events = new EventSource("/ui/events");
    events.addEventListener("changed", (e) => changed(Number(e.data)));
    events.onopen = () => { $("live").textContent = "live"; $("live").classList.add("on"); };
    events.onerror = () => { $("live").textContent = "reconnecting…"; $("live").classList.remove("on"); };
  }
  function disconnect() {
    if (!events) return;
    events.close();
    events = null;
    $("live").textContent = "live updates paused";
    $("live").classList.remove("on");
  }
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) disconnect(); else { connect(); refresh(true); }
  });

  async function loadHistory() {
    const el = document.querySelector("[data-history-src]");
    if (!el || el.dataset.loaded) return;
    el.dataset.loaded = "1";
    try {
      const r = await fetch(el.dataset.historySrc, { headers: auth(), credentials: "omit" });
      const html = await r.text();
      if (r.ok && (r.headers.get("Content-Type") || "").startsWith("text/html")) el.innerHTML = html;
      else el.textContent = "The history could not be read.";
    } catch (e) {
      el.textContent = "The history could not be read.";
    }
    el.removeAttribute("aria-busy");
  }

  function confirmThen(text, run) {
    const d = $("confirm");
    $("confirm-text").textContent = text;
    d.returnValue = "";
    d.onclose = () => { if (d.returnValue === "ok") run(); };
    d.showModal();
    $("confirm-cancel").focus();
  }

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "omit",
      headers: { "Content-Type": "application/json", ...auth() }, body: JSON.stringify(body),
    });
    let answer = {};
    try { answer = await r.json(); } catch (e) { /* not JSON */ }
    return { ok: r.ok, status: r.status, error: answer.error, answer };
  }

  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const { action, env, app, plan, summary } = b.dataset;
    if (action === "retry") {
      confirmThen(`Retry ${app} in ${env}? pacer deploys the current commit again.`, async () => {
        const r = await post("/api/v1/retry", { env, app });
        say(r.ok ? `Retry of ${app} queued.` : `Retry refused (${r.status}): ${r.error || ""}`);
      });
    } else if (action === "apply") {
      confirmThen(`Apply ${env}'s plan (${summary})? Marathon changes now.`, async () => {
        const r = await post("/api/v1/apply", { env, plan });
        say(r.ok ? `Apply of ${env} queued.` : `Apply refused (${r.status}): ${r.error || ""}`);
      });
    } else if (action === "signout") {
      sessionStorage.removeItem(KEY);
      location.href = "/";
    }
  });

  document.addEventListener("submit", async (ev) => {
    if (ev.target.id !== "signin") return;
    ev.preventDefault();
    const r = await post("/ui/session", { token: $("token").value });
    if (r.ok && r.answer.session) {
      sessionStorage.setItem(KEY, r.answer.session);
      location.href = "/";
    } else {
      const e = $("signin-error");
      e.textContent = r.error || `Signing in failed (${r.status}).`;
      e.hidden = false;
    }
  });

  document.addEventListener("change", (ev) => {
    if (ev.target.matches("select[data-autosubmit]")) ev.target.form.requestSubmit();
  });
  // A filter's new URL is loaded with the session too.
  document.addEventListener("submit", (ev) => {
    const f = ev.target;
    if (f.id === "signin" || f.method !== "get" || !session()) return;
    ev.preventDefault();
    const url = new URL(f.action, location.href);
    url.search = new URLSearchParams(new FormData(f)).toString();
    history.pushState(null, "", url);
    refresh(true);
  });
  window.addEventListener("popstate", () => refresh(true));

  if (session()) {
    // The server rendered the public view; show this session's at once.
    document.body.classList.add("upgrading");
    refresh(true);
  } else {
    loadHistory();
  }
  connect();
})();
