/* Agent console: live updates over one websocket with replay, composer, shortcuts.
 * No build step. All customer content arrives as server-rendered, escaped HTML fragments. */
(function () {
  "use strict";
  const cfg = JSON.parse(document.getElementById("console-config").textContent);
  const cursors = JSON.parse(document.getElementById("cursors").textContent);
  const csrfInput = document.querySelector("[name=csrfmiddlewaretoken]");
  const csrftoken = csrfInput ? csrfInput.value : "";
  const connEl = document.getElementById("conn");
  let ws = null;
  let retry = 0;
  let heartbeat = null;

  function setConn(text, cls) {
    connEl.textContent = text;
    connEl.className = "conn " + (cls || "");
  }

  // --- websocket with replay --------------------------------------------------------
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const url = proto + "://" + location.host + "/ws/console/?cursors=" + encodeURIComponent(JSON.stringify(cursors));
    ws = new WebSocket(url);
    ws.onopen = function () {
      retry = 0;
      readUpTo = 0;
      setTimeout(markRead, 200);
      setConn("live", "ok");
      clearInterval(heartbeat);
      heartbeat = setInterval(function () { send({ type: "heartbeat" }); }, 20000);
      send({ type: "heartbeat" });
    };
    ws.onmessage = function (e) {
      let ev;
      try { ev = JSON.parse(e.data); } catch (err) { return; }
      handle(ev);
    };
    ws.onclose = function (e) {
      clearInterval(heartbeat);
      if (e.code === 4401) { location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname); return; }
      setConn("reconnecting…", "warn");
      setTimeout(connect, Math.min(500 * Math.pow(2, retry++), 15000));
    };
  }
  function send(obj) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); }
  window.addEventListener("online", function () { if (ws && ws.readyState > 1) connect(); });

  const seenEvents = [];  // for tests and debugging: the sequence numbers this page processed
  window.consoleEvents = seenEvents;

  function handle(ev) {
    if (ev.stream) {
      if (ev.seq <= (cursors[ev.stream] || 0)) return;  // duplicate
      cursors[ev.stream] = ev.seq;
      seenEvents.push(ev.stream + ":" + ev.seq);
    }
    switch (ev.type) {
      case "hello":
        Object.keys(ev.streams).forEach(function (s) { if (!(s in cursors)) cursors[s] = ev.streams[s]; });
        break;
      case "resync":
        location.reload();
        break;
      case "message":
        queueRow(ev.conversation_id);
        if (cfg.contactId && ev.contact_id === cfg.contactId) {
          if (ev.op === "delivery") refreshMessages(ev.message_id - 1);
          else if (ev.op === "read") refreshMessages(ev.first_id - 1);
          else refreshMessages();
          if (ev.direction === "in") showTyping(false);
        }
        break;
      case "conversation":
        queueRow(ev.conversation_id);
        if (ev.source_id) queueRow(ev.source_id);
        if (ev.conversation_id === cfg.conversationId || ev.source_id === cfg.conversationId) {
          refreshPanel();
          if (ev.op === "merged") refreshMessages();
        }
        break;
      case "contact":
        if (cfg.contactId && (ev.contact_id === cfg.contactId || ev.source_contact_id === cfg.contactId)) refreshPanel();
        break;
      case "offer":
        queueRow(ev.conversation_id);
        if (ev.agent_id === cfg.userId && ev.op === "withdrawn") {
          flash("The offer of chat #" + ev.conversation_id + " was withdrawn (transferred).");
        } else if (ev.agent_id === cfg.userId) {
          flash("");
          const bar = document.querySelector(".flash.js") || (flash(" "), document.querySelector(".flash.js"));
          bar.textContent = "A new chat is offered to you (#" + ev.conversation_id + "). ";
          const link = document.createElement("a");
          link.href = "/console/c/" + ev.conversation_id + "/";
          link.textContent = "Open and accept";
          bar.appendChild(link);
          bar.hidden = false;
        }
        if (ev.conversation_id === cfg.conversationId) refreshPanel();
        break;
      case "notification":
        if ((ev.user_ids || []).indexOf(cfg.userId) !== -1) {
          flash(ev.text);
          const bar = document.querySelector(".flash.js");
          const link = document.createElement("a");
          link.href = "/console/c/" + ev.conversation_id + "/";
          link.textContent = " Open";
          bar.appendChild(link);
        }
        break;
      case "typing":
        if (ev.conversation_id === cfg.conversationId && ev.who === "contact") showTyping(ev.typing);
        break;
      case "error":
        console.warn("console socket:", ev.message);
        break;
    }
  }

  // --- the inbox list -------------------------------------------------------------
  const rowsEl = document.getElementById("rows");
  let pendingRows = new Set();
  let rowTimer = null;
  function queueRow(id) {
    pendingRows.add(id);
    clearTimeout(rowTimer);
    rowTimer = setTimeout(flushRows, 50);
  }
  function flushRows() {
    const ids = Array.from(pendingRows);
    pendingRows = new Set();
    if (!ids.length) return;
    const url = cfg.rowsUrl + "?" + cfg.filterQuery + "&ids=" + ids.join(",") + "&current=" + (cfg.conversationId || "");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        ids.forEach(function (id) {
          const existing = rowsEl.querySelector('li.row[data-id="' + id + '"]');
          const html = data.rows[String(id)];
          if (!html) { if (existing) existing.remove(); return; }
          const tpl = document.createElement("template");
          tpl.innerHTML = html.trim();
          const li = tpl.content.firstElementChild;
          if (existing) existing.replaceWith(li);
          else if (cfg.page === 1) rowsEl.prepend(li);
        });
        sortRows();
        const empty = document.getElementById("rows-empty");
        if (empty && rowsEl.querySelector("li.row")) empty.remove();
      })
      .catch(function () { /* next event or reconnect refreshes */ });
  }
  function sortRows() {
    const items = Array.from(rowsEl.querySelectorAll("li.row"));
    items.sort(function (a, b) {
      const wa = a.dataset.waiting, wb = b.dataset.waiting;
      if (wa && wb && wa !== wb) return wa < wb ? -1 : 1;
      if (wa && !wb) return -1;
      if (!wa && wb) return 1;
      return Number(b.dataset.id) - Number(a.dataset.id);
    });
    items.forEach(function (li) { rowsEl.appendChild(li); });
  }

  // --- the open conversation -------------------------------------------------------
  const messagesEl = document.getElementById("messages");
  const historyEl = document.getElementById("history");
  let msgBusy = false, msgAgain = null;
  function lastMessageId() {
    const items = messagesEl ? messagesEl.querySelectorAll("li.msg") : [];
    return items.length ? Number(items[items.length - 1].dataset.id) : 0;
  }
  function refreshMessages(afterId) {
    if (!messagesEl) return;
    if (msgBusy) { msgAgain = afterId === undefined ? lastMessageId() : Math.min(afterId, msgAgain || afterId); return; }
    msgBusy = true;
    const after = afterId === undefined ? lastMessageId() : afterId;
    fetch("/console/c/" + cfg.conversationId + "/messages/?after=" + after, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        const nearBottom = historyEl.scrollHeight - historyEl.scrollTop - historyEl.clientHeight < 120;
        mergeMessages(html, false);
        if (nearBottom) historyEl.scrollTop = historyEl.scrollHeight;
        markRead();
      })
      .finally(function () {
        msgBusy = false;
        if (msgAgain !== null) { const a = msgAgain; msgAgain = null; refreshMessages(a); }
      });
  }
  function mergeMessages(html, prepend) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    const items = Array.from(tpl.content.querySelectorAll("li.msg"));
    if (prepend) items.reverse();
    items.forEach(function (li) {
      const existing = document.getElementById(li.id);
      if (existing) existing.replaceWith(li);
      else if (prepend) messagesEl.prepend(li);
      else messagesEl.appendChild(li);
    });
  }
  const earlier = document.getElementById("load-earlier");
  if (earlier) earlier.addEventListener("click", function () {
    const first = messagesEl.querySelector("li.msg");
    if (!first) return;
    fetch("/console/c/" + cfg.conversationId + "/messages/?before=" + first.dataset.id, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { if (!html.trim()) earlier.remove(); else mergeMessages(html, true); });
  });
  if (historyEl) historyEl.scrollTop = historyEl.scrollHeight;

  // Read receipts: tell the server which customer messages this agent has seen.
  let readUpTo = 0;
  function markRead() {
    if (!messagesEl || document.hidden) return;
    const incoming = messagesEl.querySelectorAll("li.msg-in");
    if (!incoming.length) return;
    const last = Number(incoming[incoming.length - 1].dataset.id);
    if (last > readUpTo) { readUpTo = last; send({ type: "read", conversation_id: cfg.conversationId, up_to: last }); }
  }
  document.addEventListener("visibilitychange", markRead);

  let panelBusy = false, panelAgain = false;
  function refreshPanel() {
    const panel = document.getElementById("panel");
    if (!cfg.conversationId) return;
    if (panelBusy) { panelAgain = true; return; }  // refresh once more afterwards: this one may predate the event
    // Don't wipe what the agent is typing; a focused select or just-clicked button has nothing to lose.
    if (panel.contains(document.activeElement) && !["SELECT", "BUTTON"].includes(document.activeElement.tagName)) return;
    panelBusy = true;
    fetch("/console/c/" + cfg.conversationId + "/panel/", { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { panel.innerHTML = html; })
      .finally(function () { panelBusy = false; if (panelAgain) { panelAgain = false; refreshPanel(); } });
  }

  // The assign / transfer controls: their agents (with status and load) are fetched when first opened.
  let assigneesLoading = null;
  function loadAssignees(select) {
    if (!select || select.dataset.loaded || assigneesLoading) return;
    const panelInner = select.closest(".panel-inner");
    assigneesLoading = fetch(select.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!panelInner.isConnected) return;  // the panel was re-rendered meanwhile: its controls load afresh
        panelInner.querySelectorAll("select.js-assignees").forEach(function (el) {
          if (el.dataset.loaded) return;
          const keep = el.value;
          el.innerHTML = data[el.dataset.options] || "";
          if (el.dataset.options === "transfer") el.value = keep;
          el.dataset.loaded = "1";
        });
      })
      .catch(function () { /* the next opening tries again */ })
      .finally(function () { assigneesLoading = null; });
  }
  ["pointerover", "focusin", "touchstart"].forEach(function (type) {
    document.addEventListener(type, function (e) {
      const t = e.target;
      if (t && t.closest) loadAssignees(t.closest("select.js-assignees"));
    }, { passive: true });
  });
  document.addEventListener("toggle", function (e) {
    if (e.target.classList && e.target.classList.contains("transfer")) loadAssignees(e.target.querySelector("select.js-assignees"));
  }, true);

  let typingTimer = null;
  function showTyping(on) {
    const el = document.getElementById("typing");
    if (!el) return;
    el.hidden = !on;
    clearTimeout(typingTimer);
    if (on) typingTimer = setTimeout(function () { el.hidden = true; }, 6000);
  }

  // --- forms: every POST goes through fetch, errors shown inline ----------------------
  function flash(msg) {
    let el = document.querySelector(".flash.js");
    if (!el) {
      el = document.createElement("div");
      el.className = "flash js";
      el.setAttribute("role", "alert");
      document.querySelector(".topbar").after(el);
    }
    el.textContent = msg;
    el.hidden = !msg;
  }
  function postForm(form) {
    return fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrftoken },
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, error: "Server error (" + r.status + ")" }; });
    });
  }
  document.addEventListener("submit", function (e) {
    const form = e.target;
    if (!form.classList.contains("js-action")) return;
    e.preventDefault();
    postForm(form).then(function (data) {
      if (!data.ok) { flash(data.error); return; }
      flash("");
      if (data.redirect) location.href = data.redirect;
    }).catch(function () { flash("Network error: not saved"); });
  });
  document.addEventListener("change", function (e) {
    if (e.target.classList.contains("js-autosubmit")) e.target.form.requestSubmit();
  });

  // --- composer -----------------------------------------------------------------
  const composer = document.getElementById("composer");
  const body = document.getElementById("body");
  const errorEl = document.getElementById("composer-error");
  const cannedList = document.getElementById("canned-list");
  function setMode(mode) {
    if (!composer) return;
    composer.querySelector('input[name=mode][value="' + mode + '"]').checked = true;
    composer.classList.toggle("mode-note", mode === "note");
    composer.classList.toggle("mode-reply", mode === "reply");
    document.getElementById("send").textContent = mode === "note" ? "Add note" : "Send";
    body.focus();
  }
  if (composer) {
    composer.addEventListener("change", function (e) { if (e.target.name === "mode") setMode(e.target.value); });
    composer.addEventListener("submit", function (e) {
      e.preventDefault();
      const btn = document.getElementById("send");
      btn.disabled = true;
      errorEl.textContent = "";
      // What this send carries: text typed or a file picked while it is in flight stays for the next one.
      const fileInput = composer.querySelector("input[type=file]");
      const sentText = body.value, sentFiles = fileInput.files;
      postForm(composer).then(function (data) {
        if (!data.ok) { errorEl.textContent = data.error; return; }
        if (body.value === sentText) body.value = "";
        if (fileInput.files === sentFiles) fileInput.value = "";
        hideCanned();
        body.dispatchEvent(new Event("composer-sent"));  // the SMS counter counts what is left
        refreshMessages();
      }).catch(function () { errorEl.textContent = "Network error: your message was not sent. Try again."; })
        .finally(function () { btn.disabled = false; });
    });
    let lastTyping = 0, typingStop = null;
    body.addEventListener("input", function () {
      const now = Date.now();
      if (now - lastTyping > 3000) { lastTyping = now; send({ type: "typing", conversation_id: cfg.conversationId, typing: true }); }
      clearTimeout(typingStop);
      typingStop = setTimeout(function () {
        lastTyping = 0;
        send({ type: "typing", conversation_id: cfg.conversationId, typing: false });
      }, 4000);
      cannedLookup();
    });
    body.addEventListener("keydown", function (e) {
      if (!cannedList.hidden && ["ArrowDown", "ArrowUp", "Enter", "Tab", "Escape"].includes(e.key)) {
        cannedKey(e);
        return;
      }
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); composer.requestSubmit(); }
      if (e.key === "Escape") body.blur();
    });
  }

  // SMS: characters and segments as the agent types (GSM-7: 160 / 153 per part; UCS-2: 70 / 67).
  const GSM7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  const GSM7_EXT = "^{}\\[~]|€";
  function smsSegments(text) {
    let gsm = true, units = 0;
    for (const ch of text) {
      if (GSM7.indexOf(ch) !== -1) units += 1;
      else if (GSM7_EXT.indexOf(ch) !== -1) units += 2;
      else { gsm = false; break; }
    }
    if (!gsm) units = Array.from(text).reduce(function (n, ch) { return n + (ch.codePointAt(0) > 0xffff ? 2 : 1); }, 0);
    const single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    const segments = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / part);
    return { encoding: gsm ? "GSM-7" : "UCS-2", units: units, segments: segments };
  }
  window.smsSegments = smsSegments;
  const smsCount = document.getElementById("sms-count");
  if (smsCount && body) {
    const update = function () {
      const r = smsSegments(body.value);
      smsCount.textContent = r.units + " chars · " + r.segments + " segment" + (r.segments === 1 ? "" : "s") + " (" + r.encoding + ")";
    };
    body.addEventListener("input", update);
    body.addEventListener("composer-sent", update);
    update();
  }

  // Canned messages: "#shortcut" before the caret opens the list; Tab/Enter inserts.
  let cannedItems = [], cannedIndex = 0, cannedToken = null;
  function cannedLookup() {
    const upto = body.value.slice(0, body.selectionStart);
    const m = upto.match(/(^|\s)#([\w-]*)$/);
    if (!m) { hideCanned(); return; }
    cannedToken = { start: upto.length - m[2].length - 1, end: body.selectionStart };
    fetch(cfg.cannedUrl + "?q=" + encodeURIComponent(m[2]) + "&conversation=" + cfg.conversationId, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        cannedItems = data.items;
        cannedIndex = 0;
        renderCanned();
      });
  }
  function renderCanned() {
    cannedList.textContent = "";
    if (!cannedItems.length) { hideCanned(); return; }
    cannedItems.forEach(function (item, i) {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === cannedIndex ? "true" : "false");
      const key = document.createElement("strong");
      key.textContent = "#" + item.shortcut;
      const text = document.createElement("span");
      text.textContent = " " + (item.title || item.body.slice(0, 60));
      li.append(key, text);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); cannedIndex = i; insertCanned(); });
      cannedList.appendChild(li);
    });
    cannedList.hidden = false;
  }
  function hideCanned() { cannedList.hidden = true; cannedItems = []; }
  function cannedKey(e) {
    e.preventDefault();
    if (e.key === "ArrowDown") cannedIndex = (cannedIndex + 1) % cannedItems.length;
    else if (e.key === "ArrowUp") cannedIndex = (cannedIndex - 1 + cannedItems.length) % cannedItems.length;
    else if (e.key === "Escape") { hideCanned(); return; }
    else { insertCanned(); return; }
    renderCanned();
  }
  function insertCanned() {
    const item = cannedItems[cannedIndex];
    if (!item || !cannedToken) return;
    body.value = body.value.slice(0, cannedToken.start) + item.body + body.value.slice(cannedToken.end);
    const caret = cannedToken.start + item.body.length;
    body.setSelectionRange(caret, caret);
    hideCanned();
    body.focus();
  }

  // --- keyboard shortcuts -----------------------------------------------------------
  function go(delta) {
    const rows = Array.from(rowsEl.querySelectorAll("li.row a.row-link"));
    if (!rows.length) return;
    const cur = rows.findIndex(function (a) { return a.parentElement.classList.contains("current"); });
    const next = rows[Math.max(0, Math.min(rows.length - 1, cur + delta))];
    if (next) location.href = next.href;
  }
  document.addEventListener("keydown", function (e) {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t.closest && t.closest("input, textarea, select, [contenteditable]")) return;
    if (e.key === "r" && composer) { e.preventDefault(); setMode("reply"); }
    else if (e.key === "n" && composer) { e.preventDefault(); setMode("note"); }
    else if (e.key === "j") { e.preventDefault(); go(1); }
    else if (e.key === "k") { e.preventDefault(); go(-1); }
    else if (e.key === "/") { e.preventDefault(); document.getElementById("q").focus(); }
    else if (e.key === "c" && composer) {
      e.preventDefault();
      body.focus();
      // "#" opens the canned search where it starts a word: after text, a space goes first.
      const before = body.value.slice(0, body.selectionStart);
      body.setRangeText(before === "" || /\s$/.test(before) ? "#" : " #", body.selectionStart, body.selectionEnd, "end");
      cannedLookup();
    }
    else if (e.key === "?") { e.preventDefault(); document.getElementById("shortcuts").showModal(); }
  });

  // --- SLA countdowns: green, amber from the warning time, red once due, grey while paused ----------
  const skew = Date.now() - new Date(cfg.serverNow).getTime();  // browser clock minus server clock
  function fmtSpan(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    if (s >= 86400) return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return s + "s";
  }
  function tickSla() {
    const now = Date.now() - skew;
    document.querySelectorAll(".sla[data-due]").forEach(function (el) {
      let cls = "sla-grey", text = "SLA paused";
      if (!el.dataset.paused && el.dataset.due) {
        const due = new Date(el.dataset.due).getTime();
        const warn = el.dataset.warn ? new Date(el.dataset.warn).getTime() : due;
        if (now >= due) { cls = "sla-red"; text = "SLA " + fmtSpan(now - due) + " over"; }
        else if (now >= warn) { cls = "sla-amber"; text = "SLA " + fmtSpan(due - now) + " left"; }
        else { cls = "sla-green"; text = "SLA " + fmtSpan(due - now) + " left"; }
      }
      el.classList.remove("sla-green", "sla-amber", "sla-red", "sla-grey");
      el.classList.add(cls);
      el.setAttribute("data-sla", cls.slice(4));
      if (el.textContent !== text) el.textContent = text;  // rows and the side panel count down alike
    });
  }
  tickSla();
  setInterval(tickSla, 1000);
  new MutationObserver(tickSla).observe(document.body, { childList: true, subtree: true });

  connect();
})();
