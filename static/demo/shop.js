/* The demo shop's contact box (/demo/, DEMO_MODE only): post a message, poll the public replies.
 * A file, not an inline script: the product's pages allow scripts from our own origin only (docs/security.md). */
(function () {
  "use strict";
  const form = document.getElementById("demo-form");
  const url = form.dataset.url;
  let visitor = localStorage.getItem("demo-visitor");
  if (!visitor) { const a = new Uint8Array(18); crypto.getRandomValues(a); visitor = Array.from(a, b => b.toString(16).padStart(2, "0")).join(""); localStorage.setItem("demo-visitor", visitor); }
  const list = document.getElementById("demo-messages");
  function render(data) {
    list.textContent = "";
    (data.messages || []).forEach(function (m) {
      const li = document.createElement("li");
      li.className = "msg " + (m.from === "you" ? "msg-out" : "msg-in");
      li.textContent = (m.from === "you" ? "You: " : "Agent: ") + m.body;
      list.appendChild(li);
    });
  }
  function poll() { fetch(url + "?visitor=" + visitor).then(r => r.json()).then(render); }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const fd = new FormData(e.target); fd.append("visitor", visitor);
    fetch(url, { method: "POST", body: fd, headers: { "X-CSRFToken": document.querySelector("[name=csrfmiddlewaretoken]").value } })
      .then(r => r.json()).then(function (d) { document.getElementById("demo-error").textContent = d.error || ""; if (!d.error) { e.target.body.value = ""; render(d); } });
  });
  poll(); setInterval(poll, 3000);
})();
