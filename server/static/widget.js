/* swaplora chat widget: one <script> tag, no framework, no external resources.
 *
 *   <script src="https://HOST/widget.js" data-tenant="acme" data-key="pk-swl-..." async></script>
 *
 * Contract: adds a floating chat bubble (the tenant's colour, name, logo and greeting, from
 * GET /v1/widget/config) inside a Shadow DOM, so the host page's CSS neither reaches in nor is
 * touched. Answers stream over SSE (fetch + ReadableStream) from POST /v1/chat/completions with
 * the tenant's default model. The conversation lives in sessionStorage (this tab only). Keyboard
 * and screen reader: labelled buttons, a dialog, an aria-live log, focus moved in and back,
 * Escape closes. Under 480px wide the panel is full-screen. Errors are said kindly: busy (429,
 * with the Retry-After wait), offline / unreachable, and "this site is not allowed" (403, or a
 * refused CORS preflight while the server is reachable). Text is only ever set as textContent.
 * Each answer gets thumbs up / down (buttons under it, keyboard reachable, aria-pressed; their
 * row is laid out while the answer streams, so showing them shifts nothing), sent to
 * POST /v1/feedback with the answer's completion id. A random visitor id (this tab only) goes
 * with every question as `user`, so a conversation stays on one adapter version during a rollout.
 * Where the tenant turned on retrieval with show_citations, the passages an answer used are
 * listed under it ("Sources": file name and heading), from the stream's `citations`.
 */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-tenant][src*='widget.js']");
  if (!script) return;
  var TENANT = script.getAttribute("data-tenant") || "";
  var KEY = script.getAttribute("data-key") || "";
  var HOST = new URL(script.src, location.href).origin;
  var STORE = "swaplora:" + TENANT + ":conversation";
  var VISITOR_STORE = "swaplora:" + TENANT + ":visitor";
  var MAX_TURNS = 20;

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:15px;line-height:1.4}",
    ".bubble{position:fixed;right:20px;bottom:20px;width:60px;height:60px;border-radius:50%;border:none;cursor:pointer;",
    "background:var(--swl-color);color:var(--swl-on-color);box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}",
    ".bubble:focus-visible,button:focus-visible,textarea:focus-visible{outline:3px solid #111;outline-offset:2px}",
    ".bubble svg{width:28px;height:28px;fill:currentColor}",
    ".panel{position:fixed;right:20px;bottom:92px;width:370px;height:540px;max-height:calc(100vh - 110px);display:flex;",
    "flex-direction:column;background:#fff;color:#111;border-radius:14px;overflow:hidden;",
    "box-shadow:0 8px 30px rgba(0,0,0,.3);z-index:2147483001}",
    ".panel[hidden]{display:none}",
    "header{display:flex;align-items:center;gap:10px;padding:12px 14px;background:var(--swl-color);color:var(--swl-on-color)}",
    "header img{width:32px;height:32px;border-radius:50%;object-fit:cover;background:#fff}",
    "header h2{flex:1;margin:0;font-size:16px;font-weight:600}",
    ".close{background:transparent;border:none;color:inherit;font-size:24px;cursor:pointer;width:36px;height:36px}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f6f7f9}",
    ".msg{max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word}",
    ".assistant{align-self:flex-start;background:#fff;border:1px solid #e2e4e8}",
    ".user{align-self:flex-end;background:var(--swl-color);color:var(--swl-on-color)}",
    ".notice{padding:8px 12px;background:#fff4e5;color:#7a3e00;border-top:1px solid #f3d3a8}",
    ".notice:empty{display:none}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e2e4e8;background:#fff}",
    "textarea{flex:1;resize:none;height:42px;padding:9px;border:1px solid #c9cdd4;border-radius:8px;color:#111;background:#fff}",
    ".send{padding:0 16px;border:none;border-radius:8px;background:var(--swl-color);color:var(--swl-on-color);cursor:pointer}",
    ".send:disabled{opacity:.5;cursor:default}",
    ".rate{align-self:flex-start;display:flex;flex:none;gap:6px;margin-top:-4px;height:30px}",
    ".rate button{width:34px;height:28px;border:1px solid #c9cdd4;border-radius:8px;background:#fff;cursor:pointer;font-size:14px}",
    ".rate button[aria-pressed=true]{background:var(--swl-color);color:var(--swl-on-color);border-color:transparent}",
    ".sources{align-self:flex-start;max-width:85%;margin:0;padding:0 0 0 18px;color:#444;font-size:13px}",
    ".sources li{font-size:13px}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}",
    "@media (max-width:480px){.panel{inset:0;width:100%;height:100%;max-height:none;border-radius:0}}"
  ].join("");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs) node.setAttribute(name, attrs[name]);
    if (text) node.textContent = text;
    return node;
  }

  function onColor(hex) {
    var h = hex.replace("#", "");
    if (h.length === 3) h = h[0] + h[0] + h[1] + h[1] + h[2] + h[2];
    var rgb = [0, 2, 4].map(function (i) {
      var c = parseInt(h.substr(i, 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 0.4 ? "#111111" : "#ffffff";
  }

  function loadConversation() {
    try { return JSON.parse(sessionStorage.getItem(STORE)) || []; } catch (e) { return []; }
  }

  function saveConversation(turns) {
    try { sessionStorage.setItem(STORE, JSON.stringify(turns.slice(-MAX_TURNS))); } catch (e) { /* private mode */ }
  }

  function visitorId() {
    try {
      var id = sessionStorage.getItem(VISITOR_STORE);
      if (!id) {
        var bytes = new Uint8Array(16);
        crypto.getRandomValues(bytes);
        id = "v-" + Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
        sessionStorage.setItem(VISITOR_STORE, id);
      }
      return id;
    } catch (e) { return undefined; /* private mode: no stickiness, still works */ }
  }

  function mount() {
    var host = el("div", { id: "swaplora-widget", "data-tenant": TENANT });
    var root = host.attachShadow({ mode: "open" });
    var style = el("style", {});
    style.textContent = CSS;
    var bubble = el("button", { class: "bubble", type: "button", "aria-expanded": "false", "aria-controls": "swl-panel" });
    bubble.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
    var panel = el("section", { class: "panel", id: "swl-panel", role: "dialog", "aria-modal": "false", hidden: "" });
    var header = el("header", {});
    var logo = el("img", { alt: "", hidden: "" });
    var title = el("h2", { id: "swl-title" }, TENANT);
    var close = el("button", { class: "close", type: "button", "aria-label": "Close chat" }, "\u00d7");
    header.append(logo, title, close);
    var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
    var notice = el("div", { class: "notice", role: "alert" });
    var form = el("form", {});
    var label = el("label", { class: "sr", for: "swl-input" }, "Your message");
    var input = el("textarea", { id: "swl-input", rows: "1", placeholder: "Type your message\u2026" });
    var send = el("button", { class: "send", type: "submit" }, "Send");
    form.append(label, input, send);
    panel.setAttribute("aria-labelledby", "swl-title");
    panel.append(header, log, notice, form);
    root.append(style, bubble, panel);
    document.body.appendChild(host);

    var config = null;
    var blocked = null; /* a message that stops sending, e.g. the site is not allowed */
    var busy = false;
    var turns = loadConversation();

    function brand(name, color) {
      host.style.setProperty("--swl-color", color);
      host.style.setProperty("--swl-on-color", onColor(color));
      title.textContent = name;
      bubble.setAttribute("aria-label", "Open chat with " + name);
    }

    function addMessage(role, text) {
      var node = el("div", { class: "msg " + role }, text);
      log.appendChild(node);
      log.scrollTop = log.scrollHeight;
      return node;
    }

    function addRating(turn) {
      var row = el("div", { class: "rate", role: "group", "aria-label": "Rate this answer" });
      var up = el("button", { type: "button", "aria-label": "Helpful", "aria-pressed": String(turn.rating === "up") }, "\ud83d\udc4d");
      var down = el("button", { type: "button", "aria-label": "Not helpful", "aria-pressed": String(turn.rating === "down") }, "\ud83d\udc4e");
      row.append(up, down);
      row.style.visibility = turn.id ? "visible" : "hidden"; /* laid out now: showing it later shifts nothing */
      async function choose(rating) {
        var response = null;
        try {
          response = await api("/v1/feedback", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ completion_id: turn.id, rating: rating })
          });
        } catch (e) { /* below */ }
        if (!response || !response.ok) { say("Sorry, your rating could not be sent."); return; }
        turn.rating = rating;
        up.setAttribute("aria-pressed", String(rating === "up"));
        down.setAttribute("aria-pressed", String(rating === "down"));
        saveConversation(turns);
        say("");
      }
      up.addEventListener("click", function () { choose("up"); });
      down.addEventListener("click", function () { choose("down"); });
      log.appendChild(row);
      return row;
    }

    function addSources(turn) {
      if (!config || !config.show_citations || !turn.sources || !turn.sources.length) return;
      var list = el("ul", { class: "sources", "aria-label": "Sources" });
      turn.sources.forEach(function (source) {
        list.appendChild(el("li", {}, source.heading ? source.filename + " \u2014 " + source.heading : source.filename));
      });
      log.appendChild(list);
    }

    function render() {
      log.textContent = "";
      if (config && config.greeting) addMessage("assistant", config.greeting);
      turns.forEach(function (t) {
        addMessage(t.role, t.content);
        if (t.role === "assistant") { addRating(t); addSources(t); }
      });
    }

    function say(message) { notice.textContent = message || ""; }

    function setOpen(open) {
      panel.hidden = !open;
      bubble.setAttribute("aria-expanded", String(open));
      if (open) { input.focus(); } else { bubble.focus(); }
    }

    async function reachable() {
      try { await fetch(HOST + "/health", { mode: "no-cors", cache: "no-store" }); return true; } catch (e) { return false; }
    }

    async function explain(response) {
      if (!response) {
        if (!navigator.onLine || !(await reachable())) return "You seem to be offline, or the assistant cannot be reached. Please try again in a moment.";
        return "This site is not allowed to use this assistant.";
      }
      var body = null;
      try { body = await response.json(); } catch (e) { /* not JSON */ }
      var code = body && body.error ? body.error.code : null;
      if (response.status === 429) {
        var wait = parseInt(response.headers.get("Retry-After") || "", 10);
        return "The assistant is busy right now, try again in " + (wait > 0 ? wait : 5) + " s.";
      }
      if (code === "origin_not_allowed") return "This site is not allowed to use this assistant.";
      if (response.status === 401 || response.status === 403) return "This assistant is not available here (its key was refused).";
      if (response.status === 503) return "The assistant is starting up, please try again in a few seconds.";
      return "Sorry, something went wrong (" + response.status + "). Please try again.";
    }

    function api(path, init) {
      init = init || {};
      init.headers = Object.assign({ Authorization: "Bearer " + KEY }, init.headers || {});
      return fetch(HOST + path + (path.indexOf("?") < 0 ? "?" : "&") + "tenant=" + encodeURIComponent(TENANT), init);
    }

    async function loadConfig() {
      var response = null;
      try { response = await api("/v1/widget/config", { cache: "no-store" }); } catch (e) { /* below */ }
      if (response && response.ok) {
        config = await response.json();
        brand(config.display_name, config.brand_color);
        if (config.logo_url) { logo.src = config.logo_url; logo.hidden = false; }
        blocked = null;
        say("");
        render();
        return;
      }
      blocked = await explain(response);
      say(blocked);
      send.disabled = true;
    }

    async function readStream(response, node, turn) {
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "", text = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        var lines = buffer.split(/\r?\n/);
        buffer = lines.pop();
        for (var i = 0; i < lines.length; i++) {
          if (lines[i].indexOf("data:") !== 0) continue;
          var data = lines[i].slice(5).trim();
          if (data === "[DONE]") return text;
          var event = JSON.parse(data);
          if (event.error) throw new Error(event.error.message);
          if (event.id) turn.id = event.id;
          if (Array.isArray(event.citations)) {
            turn.sources = event.citations.slice(0, 8).map(function (c) {
              return { filename: String(c.filename || ""), heading: String(c.heading || "") };
            });
          }
          var delta = event.choices && event.choices[0] ? event.choices[0].delta : null;
          if (delta && delta.content) { text += delta.content; node.textContent = text; log.scrollTop = log.scrollHeight; }
        }
      }
      return text;
    }

    async function ask(question) {
      busy = true;
      send.disabled = true;
      say("");
      turns.push({ role: "user", content: question });
      var asked = addMessage("user", question);
      var answer = addMessage("assistant", "");
      answer.setAttribute("aria-busy", "true");
      var turn = { role: "assistant", content: "" };
      var rating = addRating(turn);
      var response = null;
      try {
        response = await api("/v1/chat/completions", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify({
            model: config.model, stream: true, user: visitorId(),
            messages: turns.slice(-MAX_TURNS).map(function (t) { return { role: t.role, content: t.content }; })
          })
        });
        if (!response.ok) throw new Error("status " + response.status);
        turn.content = await readStream(response, answer, turn);
        turns.push(turn);
        saveConversation(turns);
        rating.style.visibility = turn.id ? "visible" : "hidden";
        addSources(turn); /* below the thumbs: nothing above it moves */
      } catch (e) {
        turns.pop();
        answer.remove();
        rating.remove();
        asked.remove();
        if (!input.value) input.value = question; /* ready to send again */
        say(response && response.ok ? "Sorry, the answer was interrupted. Please try again."
                                    : await explain(response));
      } finally {
        answer.removeAttribute("aria-busy");
        busy = false;
        send.disabled = !!blocked;
      }
    }

    bubble.addEventListener("click", function () { setOpen(panel.hidden); });
    close.addEventListener("click", function () { setOpen(false); });
    panel.addEventListener("keydown", function (event) { if (event.key === "Escape") setOpen(false); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var question = input.value.trim();
      if (!question || busy || blocked || !config) return;
      input.value = "";
      ask(question);
    });
    window.addEventListener("online", function () { if (!config) loadConfig(); });

    brand(TENANT, "#2563eb");
    render();
    loadConfig();
  }

  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
