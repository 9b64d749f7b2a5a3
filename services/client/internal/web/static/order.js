// The order page, live: counts down to expiresAt and follows the order's
// status (created -> complete once paid, -> cancelled at expiry), so that
// an order expiring or completing shows without a reload.
(function () {
  "use strict";
  var live = document.getElementById("order-live");
  if (!live) return;
  var statusEl = document.getElementById("order-status");
  var message = document.getElementById("order-message");
  var countdown = document.getElementById("countdown");
  var final = { complete: "Paid. The ticket is yours.",
    cancelled: "This order is cancelled (it expired or was cancelled); the ticket is back on sale." };
  // The server's clock decides expiry: correct for the browser's offset.
  var skew = 0;
  if (countdown) {
    var serverNow = Date.parse(countdown.getAttribute("data-server-now"));
    if (!isNaN(serverNow)) skew = serverNow - Date.now();
  }
  var timer = null, poller = null;

  function hide(id) { var el = document.getElementById(id); if (el) el.hidden = true; }

  function show(status) {
    statusEl.textContent = status;
    statusEl.setAttribute("data-status", status);
    if (final[status]) {
      message.textContent = final[status];
      hide("pay-form"); hide("cancel-form");
      if (countdown) countdown.parentNode.hidden = true;
      clearInterval(timer); clearInterval(poller);
    }
  }

  function tick() {
    if (!countdown) return;
    var left = Date.parse(countdown.getAttribute("data-expires-at")) - (Date.now() + skew);
    if (left <= 0) {
      countdown.textContent = "0:00";
      message.textContent = "Time is up: this order is expiring.";
      hide("pay-form");
      return;
    }
    var s = Math.ceil(left / 1000);
    var m = Math.floor(s / 60);
    s = s % 60;
    countdown.textContent = m + ":" + (s < 10 ? "0" : "") + s;
  }

  function poll() {
    fetch(live.getAttribute("data-status-url"), { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (res) { return res.json(); })
      .then(function (body) { if (body && body.status) show(body.status); })
      .catch(function () { /* the next round tries again */ });
  }

  if (final[live.getAttribute("data-status")]) return;
  tick();
  timer = setInterval(tick, 1000);
  poller = setInterval(poll, 2000);
})();
