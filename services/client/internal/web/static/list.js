// Keeps the list of tickets for sale current without a reload: a ticket
// someone reserves disappears, a new one appears. Without JavaScript the
// page is the same list, current as of its loading.
(function () {
  "use strict";
  var box = document.getElementById("tickets");
  if (!box || !window.fetch) return;
  var url = box.getAttribute("data-refresh");
  function refresh() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (res) { return res.ok ? res.text() : null; })
      .then(function (html) { if (html !== null && html !== box.innerHTML) box.innerHTML = html; })
      .catch(function () { /* keep the list shown; the next round tries again */ });
  }
  setInterval(refresh, 3000);
})();
