/* The rule builder: condition rows -> the JSON rule in the textarea, and a live size
 * preview from POST /api/v1/segments/preview (the session's CSRF token in a header). */
(function () {
  "use strict";
  var rows = document.getElementById("conditions"), rule = document.getElementById("rule");
  var combine = document.getElementById("combine"), tpl = document.getElementById("condition-row");
  var size = document.getElementById("preview-size"), error = document.getElementById("preview-error");
  var csrf = document.querySelector("meta[name=csrf-token]").content, timer = null, seq = 0;

  function leaf(row) {
    var kind = row.querySelector(".leaf").value, value = row.querySelector(".value").value.trim();
    var min = parseInt(row.querySelector(".min").value, 10) || 1;
    var days = parseInt(row.querySelector(".days").value, 10) || 30;
    var out = {};
    if (kind === "category" || kind === "event") {
      out[kind] = value; out.min_events = min; out.within_days = days;
    } else if (kind === "recency") {
      out.recency = { within_days: parseInt(value, 10) || days };
    } else {
      out[kind] = value;
    }
    return row.querySelector(".negate").checked ? { not: out } : out;
  }

  function build() {
    var leaves = Array.prototype.map.call(rows.querySelectorAll(".condition"), leaf);
    if (!leaves.length) return;
    var built = leaves.length === 1 ? leaves[0] : {};
    if (leaves.length > 1) built[combine.value] = leaves;
    rule.value = JSON.stringify(built);
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(preview, 300);
  }

  function preview() {
    var parsed, mine = ++seq;
    try { parsed = JSON.parse(rule.value); } catch (e) { error.textContent = "not valid JSON yet"; return; }
    error.textContent = "";
    size.textContent = "…";
    fetch("/api/v1/segments/preview", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ rule: parsed })
    }).then(function (r) { return r.json(); }).then(function (data) {
      if (mine !== seq) return;
      if (data.error) { size.textContent = "-"; error.textContent = data.error.message; }
      else { size.textContent = Number(data.size).toLocaleString(); }
    });
  }

  function add() {
    var row = tpl.content.firstElementChild.cloneNode(true);
    row.addEventListener("input", build);
    row.addEventListener("change", build);
    row.querySelector(".remove").addEventListener("click", function () { row.remove(); build(); });
    rows.appendChild(row);
    return row;
  }

  document.getElementById("add-condition").addEventListener("click", function () { add(); });
  combine.addEventListener("change", build);
  rule.addEventListener("input", schedule);
  if (!rule.value) add();
  else schedule();
})();
