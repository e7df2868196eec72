/* Omnichannel chat widget. One script tag:
 *   <script async src="https://APP/static/widget/widget.js" data-omnichannel-token="TOKEN"
 *           data-omnichannel-url="https://APP"></script>
 * Optional identity (computed on the host site's server):
 *   window.OmnichannelSettings = {user_id: "42", user_hash: "<hex HMAC-SHA256(inbox secret, user_id)>",
 *                                 name: "Ann", email: "ann@example.com"};
 * Everything renders inside a shadow root, so no styles leak in or out. Visitor text is always
 * inserted with textContent. */
(function () {
  "use strict";
  const script = document.currentScript || document.querySelector("script[data-omnichannel-token]");
  if (!script || window.__omnichannelWidget) return;
  window.__omnichannelWidget = true;
  const TOKEN = script.getAttribute("data-omnichannel-token");
  const BASE = (script.getAttribute("data-omnichannel-url") || new URL(script.src).origin).replace(/\/$/, "");
  const FULLPAGE = script.getAttribute("data-omnichannel-mode") === "fullpage";
  const KEY = "omnichannel:" + TOKEN;
  // A pop-out window is served from the app's origin, whose storage is not the customer site's: the site's
  // widget hands the visitor's session over in the URL fragment (never sent to a server), read once here.
  const handoff = {};
  if (FULLPAGE && location.hash.length > 1) {
    new URLSearchParams(location.hash.slice(1)).forEach(function (v, k) { handoff[k] = v; });
    try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* ignore */ }
  }
  const host = Object.assign({}, window.OmnichannelSettings || {});
  ["user_id", "user_hash", "name", "email"].forEach(function (k) { if (handoff[k]) host[k] = handoff[k]; });
  const store = {
    get: function (k, d) { try { const v = localStorage.getItem(KEY + k); return v === null ? d : JSON.parse(v); } catch (e) { return d; } },
    set: function (k, v) { try { localStorage.setItem(KEY + k, JSON.stringify(v)); } catch (e) { /* private mode */ } },
  };

  let S = null;               // session response
  let T = {};                 // strings
  let cursor = 0;
  let ws = null, retry = 0, hbTimer = null, ackTimer = null, queueTimer = null, reconnectTimer = null;
  let typingTimer = null, lastTypingSent = 0, agentTypingTimer = null;
  let conversation = null;
  const messages = new Map();  // id -> message
  const offlineIds = new Set();  // conversations started by the offline form (tickets, not chats)
  let outbox = store.get(":outbox", []);
  let agentReadUpTo = 0;
  let open = FULLPAGE || store.get(":open", false);

  function api(path, body) {
    return fetch(BASE + "/widget/api/" + TOKEN + "/" + path + "/", {
      method: "POST", headers: { "Content-Type": "text/plain" }, body: JSON.stringify(body), credentials: "omit",
    }).then(function (r) { return r.json().then(function (d) { d._status = r.status; return d; }); });
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  function fmt(s, vars) { return String(s || "").replace(/%\((\w+)\)s/g, function (_, k) { return vars[k]; }); }

  // --- DOM -----------------------------------------------------------------------------
  const root = document.createElement("div");
  root.setAttribute("data-omnichannel", "");
  const shadow = root.attachShadow({ mode: "open" });
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  const ICONS = {
    chat: "M4 4h16v11H7l-3 3z", help: "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm1 16h-2v-2h2zm1.1-7.1-.9.9c-.7.7-1.2 1.3-1.2 2.7h-2v-.5c0-1.1.4-2.1 1.2-2.8l1.2-1.3a2 2 0 1 0-3.4-1.4H7a4 4 0 1 1 8 0c0 .9-.4 1.7-.9 2.4z",
    clip: "M16.5 6.5v9a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v9.5a1.5 1.5 0 0 1-3 0V6.5H9v8a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v10.5a6 6 0 0 0 12 0v-9z",
    wave: "M7 11V5.5a1.5 1.5 0 0 1 3 0V10h1V3.5a1.5 1.5 0 0 1 3 0V10h1V5.5a1.5 1.5 0 0 1 3 0V15a7 7 0 0 1-14 0v-2.5a1.5 1.5 0 0 1 3 0z",
  };
  function svgIcon(name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const p = document.createElementNS(ns, "path");
    p.setAttribute("d", ICONS[name] || ICONS.chat);
    p.setAttribute("fill", "currentColor");
    svg.appendChild(p);
    return svg;
  }

  let ui = {};
  function css(c) {
    const side = c.position === "left" ? "left" : "right";
    return ":host{all:initial}" +
      "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:14px}" +
      ".launcher{position:fixed;bottom:20px;" + side + ":20px;z-index:2147483000;display:flex;align-items:center;gap:8px;" +
      "background:" + c.button_color + ";color:#fff;border:0;border-radius:28px;padding:12px 18px;cursor:pointer;box-shadow:0 4px 16px rgba(0,0,0,.25)}" +
      ".launcher svg{width:22px;height:22px}.launcher:focus-visible,button:focus-visible,textarea:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}" +
      ".panel{position:fixed;bottom:84px;" + side + ":20px;z-index:2147483000;width:370px;height:560px;max-height:calc(100vh - 110px);display:flex;flex-direction:column;" +
      "background:" + c.window_background + ";color:#1f2328;border-radius:14px;overflow:hidden;box-shadow:0 8px 30px rgba(0,0,0,.3)}" +
      ".panel[hidden]{display:none}.full .panel{position:static;width:100%;height:100vh;max-height:none;border-radius:0}" +
      ".head{background:" + c.header_color + ";color:" + c.header_text_color + ";padding:12px 14px;display:flex;gap:8px;align-items:flex-start}" +
      ".head h2{margin:0;font-size:16px;font-weight:700;color:inherit}.head p{margin:3px 0 0;font-size:12px;opacity:.9;color:inherit}" +
      ".head .grow{flex:1}.head button{background:transparent;border:0;color:inherit;cursor:pointer;font-size:18px;padding:2px 6px}" +
      ".head .agent{display:flex;align-items:center;gap:6px;margin-top:6px;font-size:12px}.head .agent img{width:24px;height:24px;border-radius:50%}" +
      ".body{flex:1;overflow:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f6f7f9}" +
      ".msg{max-width:82%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.35}" +
      ".msg.visitor{align-self:flex-end;background:" + c.button_color + ";color:#fff}.msg.agent,.msg.bot{align-self:flex-start;background:#fff;border:1px solid #d9dde3}" +
      ".msg.system{align-self:center;background:transparent;color:#57606a;font-size:12px;font-style:italic}" +
      ".msg .who{display:block;font-size:11px;font-weight:700;margin-bottom:2px;color:#57606a}" +
      ".msg img.att{max-width:100%;max-height:180px;display:block;margin-top:4px;border-radius:8px}.msg a{color:inherit}" +
      ".meta{font-size:11px;opacity:.8;margin-top:2px;text-align:right}.pending{opacity:.7}" +
      ".note{font-size:12px;color:#57606a;text-align:center;padding:4px}.error{color:#b42318;font-size:12px;padding:0 12px}" +
      ".typing{font-size:12px;color:#57606a;font-style:italic;padding:0 12px;min-height:16px}" +
      "form{display:flex;flex-direction:column;gap:6px;padding:12px;background:#fff}" +
      "label{font-size:12px;font-weight:600;color:#57606a}input,select,textarea{width:100%;border:1px solid #c4c9d0;border-radius:8px;padding:7px 9px;background:#fff;color:#1f2328}" +
      ".composer{flex-direction:row;align-items:flex-end;border-top:1px solid #d9dde3;padding:8px}" +
      ".composer textarea{resize:none;height:40px;max-height:120px}" +
      "button.primary{background:" + c.button_color + ";color:#fff;border:0;border-radius:8px;padding:8px 12px;cursor:pointer;font-weight:600}" +
      "button.ghost{background:#fff;border:1px solid #c4c9d0;border-radius:8px;padding:7px 10px;cursor:pointer}" +
      ".attach{position:relative;overflow:hidden;display:flex;align-items:center;justify-content:center;width:36px;height:38px;border:1px solid #c4c9d0;border-radius:8px;color:#57606a;flex:none}" +
      ".attach svg{width:20px;height:20px}.attach input{position:absolute;inset:0;opacity:0;cursor:pointer}" +
      ".head button.end{font-size:12px;border:1px solid currentColor;border-radius:6px;padding:3px 8px}" +
      ".stars{display:flex;gap:4px}.stars button{flex:1;border:1px solid #c4c9d0;background:#fff;border-radius:8px;padding:6px 0;cursor:pointer;font-size:12px}" +
      ".stars button[aria-pressed=true]{background:" + c.button_color + ";color:#fff}" +
      ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}" +
      "@media (max-width:640px){" + (c.mobile_fullscreen ? ".panel{inset:0;width:100%;height:100%;max-height:none;border-radius:0;bottom:0}" +
        ".launcher[aria-expanded=true]{display:none}" : "") +  // the full-screen panel has its own close button
      ".launcher .label{" + (c.mobile_button_text ? "" : "display:none") + "}.launcher{padding:14px}}";
  }

  function build() {
    const c = S.config;
    shadow.appendChild(el("style", { text: css(c) }));
    if (FULLPAGE) root.classList.add("full");
    const wrap = el("div", { class: FULLPAGE ? "full" : "" });
    ui.launcher = el("button", { class: "launcher", type: "button", "aria-label": T.open, "aria-expanded": "false",
      onclick: toggle }, [svgIcon(c.button_icon), el("span", { class: "label", text: c.button_text })]);
    ui.mobileLabel = c.mobile_button_text;
    ui.title = el("h2", { id: "omni-title", text: c.title });
    ui.greeting = el("p", { text: c.greeting });
    ui.agent = el("div", { class: "agent", hidden: "" });
    ui.endBtn = el("button", { type: "button", class: "end", title: T.end, text: T.end, onclick: endChat, hidden: "" });
    const pop = el("button", { type: "button", title: T.popout, "aria-label": T.popout, text: "↗", onclick: popout });
    const close = el("button", { type: "button", title: T.close, "aria-label": T.close, text: "×", onclick: toggle });
    ui.panel = el("section", { class: "panel", role: "dialog", "aria-labelledby": "omni-title", hidden: "" }, [
      el("header", { class: "head" }, [el("div", { class: "grow" }, [ui.title, ui.greeting, ui.agent]), ui.endBtn,
        FULLPAGE ? null : pop, FULLPAGE ? null : close]),
      ui.body = el("div", { class: "body", role: "log", "aria-live": "polite", "aria-label": c.title }),
      ui.typing = el("div", { class: "typing", "aria-live": "polite" }),
      ui.error = el("div", { class: "error", role: "alert" }),
      ui.bottom = el("div", {}),
    ]);
    wrap.appendChild(ui.panel);
    if (!FULLPAGE) wrap.appendChild(ui.launcher);
    shadow.appendChild(wrap);
    document.body.appendChild(root);
  }

  function toggle() {
    if (S.config.display_mode === "popup" && !FULLPAGE) { popout(); return; }
    open = !open;
    store.set(":open", open);
    render();
    if (open) { markRead(); focusInput(); } else ui.launcher.focus();
  }
  function popout() {
    const hand = new URLSearchParams();
    if (S && S.visitor_token) hand.set("v", S.visitor_token);
    hand.set("p", location.href);
    hand.set("t", document.title);
    if (document.referrer) hand.set("r", document.referrer);
    ["user_id", "user_hash", "name", "email"].forEach(function (k) { if (host[k]) hand.set(k, host[k]); });
    window.open(BASE + "/widget/popup/" + TOKEN + "/#" + hand.toString(), "omnichannel-chat", "width=400,height=640");
    if (open) toggle();
  }
  function endChat() {
    // Inline confirmation (no blocking confirm() dialogs inside someone else's page).
    if (ui.bottom.querySelector(".confirm-end")) return;
    const bar = el("form", { class: "confirm-end" }, [el("div", { class: "note", text: T.end_confirm }),
      el("button", { class: "primary", type: "button", text: T.end, onclick: function () {
        sendFrame({ type: "end" });
        bar.remove();
      } }),
      el("button", { class: "ghost", type: "button", text: "×", "aria-label": T.close, onclick: function () { bar.remove(); } })]);
    ui.bottom.prepend(bar);
    bar.querySelector("button").focus();
  }
  function focusInput() { const t = shadow.querySelector("textarea, input"); if (t) t.focus(); }

  // --- views ----------------------------------------------------------------------------
  function render() {
    ui.panel.hidden = !open;
    ui.launcher.setAttribute("aria-expanded", String(open));
    const active = conversation && conversation.active;
    ui.endBtn.hidden = !active;
    const a = conversation && conversation.agent;
    ui.agent.hidden = !(a && active);
    ui.agent.textContent = "";
    if (a && active) {
      if (a.avatar && S.config.show_agent_avatars) ui.agent.appendChild(el("img", { src: a.avatar, alt: "" }));
      ui.agent.appendChild(el("span", { text: a.name }));
    }
    renderBottom();
  }

  function renderBottom() {
    const active = conversation && conversation.active;
    const ended = conversation && !conversation.active;
    ui.bottom.textContent = "";
    if (ended && ui.bottom.dataset.view !== "composer-new") { ui.bottom.dataset.view = "ended"; ui.bottom.appendChild(endedView()); return; }
    if (!active && !S.online) { ui.bottom.dataset.view = "offline"; ui.bottom.appendChild(offlineForm()); return; }
    if (!active && !S.prechat_done) { ui.bottom.dataset.view = "prechat"; ui.bottom.appendChild(prechatForm()); return; }
    ui.bottom.dataset.view = "composer";
    ui.bottom.appendChild(composer());
  }

  function field(f) {
    const id = "omni-f-" + f.name;
    let input;
    if (f.type === "select") {
      input = el("select", { id: id, name: f.name }, [el("option", { value: "", text: "—" })].concat(
        (f.options || []).map(function (o) { return el("option", { value: o, text: o }); })));
    } else if (f.type === "textarea") {
      input = el("textarea", { id: id, name: f.name, rows: "3" });
    } else {
      input = el("input", { id: id, name: f.name, type: { email: "email", tel: "tel" }[f.type] || "text",
        autocomplete: { name: "name", email: "email", phone: "tel" }[f.name] || "off" });
    }
    if (f.required) input.setAttribute("required", "");
    return [el("label", { for: id, text: (f.label || f.name) + (f.required ? " *" : "") }), input];
  }

  function prechatForm() {
    const form = el("form", { novalidate: "" }, [el("div", { class: "note", text: S.config.prechat_message })]);
    S.config.prechat_fields.forEach(function (f) { field(f).forEach(function (n) { form.appendChild(n); }); });
    form.appendChild(el("button", { class: "primary", type: "submit", text: T.start }));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      const answers = {};
      S.config.prechat_fields.forEach(function (f) { answers[f.name] = form.elements[f.name].value; });
      api("prechat", { visitor_token: S.visitor_token, answers: answers }).then(function (d) {
        if (d._status !== 200) { showError(d.error); return; }
        S.prechat_done = true;
        showError("");
        renderBottom();
        focusInput();
      });
    });
    return form;
  }

  function offlineForm() {
    const form = el("form", {}, [el("div", { class: "note", text: S.config.offline_message })]);
    [{ name: "name", label: T.name, type: "text" }, { name: "email", label: T.email, type: "email", required: true },
      { name: "body", label: T.message, type: "textarea", required: true }].forEach(function (f) {
      field(f).forEach(function (n) { form.appendChild(n); });
    });
    form.appendChild(el("button", { class: "primary", type: "submit", text: T.submit }));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      api("offline", { visitor_token: S.visitor_token, name: form.elements.name.value,
        email: form.elements.email.value, body: form.elements.body.value }).then(function (d) {
        if (d._status !== 201) { showError(d.error); return; }
        showError("");
        // The message's own frame may come before or after this answer: either way it is a ticket, not a chat.
        offlineIds.add(d.conversation_id);
        if (conversation && conversation.id === d.conversation_id) conversation = null;
        ui.bottom.textContent = "";
        ui.bottom.dataset.view = "offline-sent";
        ui.bottom.appendChild(el("div", { class: "note", role: "status", text: T.offline_sent }));
      });
    });
    return form;
  }

  function composer() {
    const ta = el("textarea", { "aria-label": T.placeholder, placeholder: T.placeholder, rows: "1", maxlength: "10000" });
    const file = el("input", { type: "file", "aria-label": T.attach, accept: S.config.upload_types.join(",") });
    const send = el("button", { class: "primary", type: "submit", text: T.send });
    const form = el("form", { class: "composer" }, [
      el("span", { class: "attach", title: T.attach }, [svgIcon("clip"), file]),
      ta, send]);
    ta.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    ta.addEventListener("input", function () {
      const now = Date.now();
      if (now - lastTypingSent > 2000) { lastTypingSent = now; sendFrame({ type: "typing", typing: true }); }
      clearTimeout(typingTimer);
      typingTimer = setTimeout(function () { lastTypingSent = 0; sendFrame({ type: "typing", typing: false }); }, 4000);
    });
    file.addEventListener("change", function () { if (file.files[0]) upload(file.files[0]); file.value = ""; });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      const body = ta.value.trim();
      if (!body) return;
      ta.value = "";
      queueMessage(body);
      clearTimeout(typingTimer);
      lastTypingSent = 0;
      sendFrame({ type: "typing", typing: false });
    });
    return form;
  }

  function endedView() {
    const box = el("form", {}, [el("div", { class: "note", text: T.chat_ended })]);
    if (S.config.postchat_survey_enabled && !conversation.rated) {
      let rating = 0;
      const stars = el("div", { class: "stars", role: "group", "aria-label": S.config.postchat_question });
      [1, 2, 3, 4, 5].forEach(function (n) {
        stars.appendChild(el("button", { type: "button", "aria-pressed": "false", title: T["rating_" + n],
          text: n + " ★", onclick: function () {
            rating = n;
            stars.querySelectorAll("button").forEach(function (b, i) { b.setAttribute("aria-pressed", String(i + 1 === n)); });
          } }));
      });
      const comment = el("textarea", { id: "omni-comment", rows: "2" });
      box.appendChild(el("label", { text: S.config.postchat_question }));
      box.appendChild(stars);
      box.appendChild(el("label", { for: "omni-comment", text: T.survey_comment }));
      box.appendChild(comment);
      box.appendChild(el("button", { class: "primary", type: "button", text: T.survey_submit, onclick: function () {
        api("survey", { visitor_token: S.visitor_token, conversation_id: conversation.id, rating: rating,
          comment: comment.value }).then(function (d) {
          if (d._status !== 200) { showError(d.error); return; }
          conversation.rated = true;
          showError("");
          renderBottom();
          ui.body.appendChild(el("div", { class: "note", role: "status", text: T.survey_thanks }));
        });
      } }));
    }
    const email = el("input", { type: "email", id: "omni-tr-email", "aria-label": T.email, placeholder: T.email });
    box.appendChild(el("label", { for: "omni-tr-email", text: T.transcript }));
    box.appendChild(email);
    box.appendChild(el("button", { class: "ghost", type: "button", text: T.transcript, onclick: function () {
      api("transcript", { visitor_token: S.visitor_token, conversation_id: conversation.id, email: email.value })
        .then(function (d) { showError(d._status === 200 ? "" : d.error); if (d._status === 200) note(T.transcript_sent); });
    } }));
    box.appendChild(el("button", { class: "ghost", type: "button", text: T.new_chat, onclick: function () {
      ui.bottom.dataset.view = "composer-new";
      renderBottom();
      focusInput();
    } }));
    return box;
  }

  function note(text) { ui.body.appendChild(el("div", { class: "note", role: "status", text: text })); scrollDown(); }
  function showError(text) { ui.error.textContent = text || ""; }
  function scrollDown() { ui.body.scrollTop = ui.body.scrollHeight; }

  // --- messages ---------------------------------------------------------------------------
  function renderMessage(m) {
    const existing = shadow.getElementById("m-" + m.id) || (m.client_id && shadow.getElementById("p-" + m.client_id));
    const who = m.from === "agent" ? ((m.agent && m.agent.name) || T.agent) : m.from === "visitor" ? T.you : "";
    const node = el("div", { class: "msg " + m.from, id: "m-" + m.id, "data-id": String(m.id) }, [
      who && m.from !== "visitor" ? el("span", { class: "who", text: who }) : null,
      m.body ? el("span", { text: m.body }) : null]);
    (m.attachments || []).forEach(function (a) {
      if (a.image) node.appendChild(el("img", { class: "att", src: a.url, alt: a.name }));
      else node.appendChild(el("a", { href: a.url, target: "_blank", rel: "noopener", text: a.name, download: a.name }));
    });
    if (m.from === "visitor") node.appendChild(el("div", { class: "meta", "data-read": "" }));
    if (existing) existing.replaceWith(node); else ui.body.appendChild(node);
    messages.set(m.id, m);
    updateReadMarks();
    scrollDown();
  }
  function renderPending(p) {
    if (shadow.getElementById("p-" + p.client_id)) return;
    const online = ws && ws.readyState === 1;
    ui.body.appendChild(el("div", { class: "msg visitor pending", id: "p-" + p.client_id }, [
      el("span", { text: p.body }), el("div", { class: "meta", text: online ? T.sending : T.queued_offline })]));
    scrollDown();
  }
  function updateReadMarks() {
    let lastVisitor = null;
    messages.forEach(function (m) { if (m.from === "visitor" && m.id <= agentReadUpTo) lastVisitor = m; });
    shadow.querySelectorAll("[data-read]").forEach(function (n) { n.textContent = ""; });
    if (lastVisitor) {
      const n = shadow.getElementById("m-" + lastVisitor.id);
      if (n) n.querySelector("[data-read]").textContent = T.read + " ✓✓";
    }
  }

  function queueMessage(body) {
    const p = { client_id: uuid(), body: body };
    outbox.push(p);
    store.set(":outbox", outbox);
    renderPending(p);
    flushOutbox();
  }
  function flushOutbox() {
    if (!ws || ws.readyState !== 1) return;
    outbox.forEach(function (p) { sendFrame({ type: "message", body: p.body, client_id: p.client_id }); });
  }
  function settle(clientId) {
    outbox = outbox.filter(function (p) { return p.client_id !== clientId; });
    store.set(":outbox", outbox);
  }

  function upload(file) {
    if (file.size > S.config.max_upload_mb * 1024 * 1024) { showError(file.name + ": > " + S.config.max_upload_mb + " MB"); return; }
    const fd = new FormData();
    fd.append("visitor_token", S.visitor_token);
    fd.append("client_id", uuid());
    fd.append("file", file);
    fetch(BASE + "/widget/api/" + TOKEN + "/upload/", { method: "POST", body: fd, credentials: "omit" })
      .then(function (r) { return r.json().then(function (d) { d._status = r.status; return d; }); })
      .then(function (d) {
        if (d._status !== 201) { showError(d.error); return; }
        showError("");
        onMessage(d.message);
      })
      .catch(function () { showError(T.failed); });
  }

  function onMessage(m) {
    if (m.client_id) { settle(m.client_id); }
    if (offlineIds.has(m.conversation_id)) { renderMessage(m); return; }  // an offline message: no live chat
    if (conversation === null || conversation.id !== m.conversation_id) {
      conversation = { id: m.conversation_id, status: "open", active: true, agent: null, rated: false };
      ui.bottom.dataset.view = "";
      render();
    }
    renderMessage(m);
    if (m.from === "agent") { ui.typing.textContent = ""; markRead(); }
  }

  function markRead() {
    if (!open || document.hidden) return;
    let maxAgent = 0;
    messages.forEach(function (m) { if (m.from !== "visitor" && !m.read && m.id > maxAgent) maxAgent = m.id; });
    if (maxAgent) {
      messages.forEach(function (m) { if (m.id <= maxAgent && m.from !== "visitor") m.read = true; });
      sendFrame({ type: "read", up_to: maxAgent });
    }
  }
  document.addEventListener("visibilitychange", markRead);

  // --- socket -----------------------------------------------------------------------------
  function sendFrame(f) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(f)); }
  function connect() {
    const url = BASE.replace(/^http/, "ws") + S.socket_path + "?token=" + encodeURIComponent(S.visitor_token) +
      "&cursor=" + cursor;
    ws = new WebSocket(url);
    ws.onopen = function () {
      retry = 0;
      root.setAttribute("data-state", "live");
      showError("");
      clearInterval(hbTimer);
      hbTimer = setInterval(function () {
        sendFrame({ type: "heartbeat" });
        clearTimeout(ackTimer);
        ackTimer = setTimeout(function () { if (ws) ws.close(); }, 10000);  // a dead link (laptop sleep)
      }, 25000);
      shadow.querySelectorAll(".pending .meta").forEach(function (n) { n.textContent = T.sending; });
      flushOutbox();
    };
    ws.onmessage = function (e) {
      let f;
      try { f = JSON.parse(e.data); } catch (err) { return; }
      handle(f);
    };
    ws.onclose = function (e) {
      clearInterval(hbTimer);
      clearTimeout(ackTimer);
      root.setAttribute("data-state", "offline");
      if (e.code === 4403 || e.code === 4404) return;  // not allowed here: stay quiet
      if (e.code === 4401) { store.set(":visitor", null); }
      shadow.querySelectorAll(".pending .meta").forEach(function (n) { n.textContent = T.queued_offline; });
      reconnectTimer = setTimeout(function () { if (e.code === 4401 || e.code === 4409) boot(); else connect(); },
        Math.min(500 * Math.pow(2, retry++), 10000));
    };
  }
  window.addEventListener("offline", function () { if (ws) ws.close(); });
  window.addEventListener("online", function () {
    if (ws && ws.readyState > 1) { clearTimeout(reconnectTimer); retry = 0; connect(); }  // one socket, not two
  });

  function handle(f) {
    if (f.stream) {
      if (f.seq <= cursor) return;
      cursor = f.seq;
    }
    switch (f.type) {
      case "hello": break;
      case "message": onMessage(f.message); break;
      case "ack": settle(f.client_id); break;
      case "typing":
        if (f.agent) {
          ui.typing.textContent = f.typing ? fmt(T.typing, { name: f.agent.name }) : "";
          clearTimeout(agentTypingTimer);
          agentTypingTimer = setTimeout(function () { ui.typing.textContent = ""; }, 6000);
        }
        break;
      case "read": agentReadUpTo = Math.max(agentReadUpTo, f.up_to); updateReadMarks(); break;
      case "status":
        if (conversation && conversation.id === f.conversation_id) {
          conversation.status = f.status;
          conversation.active = f.active;
          if (!f.active) ui.bottom.dataset.view = "";
          render();
        }
        break;
      case "ended": break;
      case "agent":
        if (conversation && conversation.id === f.conversation_id) { conversation.agent = f.agent; render(); }
        break;
      case "queue":
        if (f.position) {
          ui.typing.textContent = S.config.queue_message + " " + fmt(T.queue_position, { position: f.position }) +
            (f.estimated_wait_seconds ? " " + fmt(T.wait_estimate, { minutes: Math.max(1, Math.round(f.estimated_wait_seconds / 60)) }) : "");
        }
        break;
      case "heartbeat_ack": clearTimeout(ackTimer); break;
      case "resync": break;
      case "error":
        if (f.client_id) {
          settle(f.client_id);
          const p = shadow.getElementById("p-" + f.client_id);
          if (p) p.querySelector(".meta").textContent = T.failed + ": " + f.message;
        }
        showError(f.message);
        break;
    }
  }

  function pollQueue() {
    clearInterval(queueTimer);
    queueTimer = setInterval(function () {
      if (conversation && conversation.active && !conversation.agent) sendFrame({ type: "queue" });
    }, 10000);
  }

  function sessionBody() {
    if (handoff.v) { store.set(":visitor", handoff.v); delete handoff.v; }  // the site's visitor, continued
    return { visitor_token: store.get(":visitor", null), page_url: handoff.p || location.href,
      page_title: handoff.t || document.title, referrer: handoff.r || document.referrer, language: navigator.language, user_id: host.user_id, user_hash: host.user_hash,
      name: host.name, email: host.email };
  }

  let bootRetry = 0;
  function boot() {
    return api("session", sessionBody()).then(function (d) {
      if (d._status !== 200) { console.warn("Omnichannel chat:", d.error); return; }
      const first = S === null;
      S = d;
      T = d.strings;
      store.set(":visitor", d.visitor_token);
      cursor = d.cursor;
      conversation = d.conversation;
      if (first) build();
      ui.body.textContent = "";
      messages.clear();
      if (S.config.greeting) ui.body.appendChild(el("div", { class: "msg agent", text: S.config.greeting }));
      d.messages.forEach(renderMessage);
      outbox.forEach(renderPending);
      render();
      if (conversation && conversation.queue_position) sendFrame({ type: "queue" });
      connect();
      pollQueue();
    }).catch(function (err) {
      // Offline, or this site is not allowed (no CORS answer): retry, backing off to once every 5 minutes.
      console.error("Omnichannel chat:", err);
      bootRetry = Math.min(bootRetry * 2 || 5000, 300000);
      setTimeout(boot, bootRetry);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot); else boot();
})();
