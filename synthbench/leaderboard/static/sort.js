// synthbench leaderboard: sort any table column by clicking its heading.
// Numeric columns sort best-first on the first click (by the heading's
// data-best), text columns A-Z; a second click reverses. Cells without a value
// (failed, not supported, not reported) always sort last. Ships with the
// package; the pages load nothing else.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.children[index];
    if (!cell) { return null; }
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent.trim(); }
    return raw === "" ? null : raw;
  }

  // A generator's variants stay under its row whatever the order: the rows
  // without data-variant-of are sorted, and each one's variants (sorted the
  // same way) follow it.
  function sortBy(table, th, index) {
    var tbody = table.tBodies[0];
    var all = Array.prototype.slice.call(tbody.rows);
    var rows = all.filter(function (r) { return !r.hasAttribute("data-variant-of"); });
    var variants = {};
    all.forEach(function (r) {
      var key = r.getAttribute("data-variant-of");
      if (key !== null) { (variants[key] = variants[key] || []).push(r); }
    });
    var numeric = th.getAttribute("data-sort") === "num";
    var current = th.getAttribute("aria-sort");
    var firstDir = numeric && th.getAttribute("data-best") !== "low" ? "descending" : "ascending";
    var dir = current === null || current === "none"
      ? firstDir : (current === "ascending" ? "descending" : "ascending");
    var sign = dir === "ascending" ? 1 : -1;
    function compare(a, b) {
      var va = cellValue(a, index), vb = cellValue(b, index);
      if (va === null && vb === null) { return 0; }
      if (va === null) { return 1; }
      if (vb === null) { return -1; }
      if (numeric) { return sign * (parseFloat(va) - parseFloat(vb)); }
      return sign * va.localeCompare(vb);
    }
    rows.sort(compare);
    rows.forEach(function (r) {
      tbody.appendChild(r);
      var toggle = r.querySelector("button.variants-toggle");
      var mine = toggle ? variants[toggle.getAttribute("data-variants")] : null;
      if (mine) {
        mine.sort(compare).forEach(function (v) { tbody.appendChild(v); });
        delete variants[toggle.getAttribute("data-variants")];
      }
    });
    Object.keys(variants).forEach(function (key) {  // a variant whose row is not in this table: last
      variants[key].forEach(function (v) { tbody.appendChild(v); });
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.setAttribute("aria-sort", h === th ? dir : "none");
    });
  }

  function init(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, index) {
      if (!th.hasAttribute("data-sort")) { return; }
      th.setAttribute("aria-sort", "none");
      var button = th.querySelector("button") || th;
      button.addEventListener("click", function () { sortBy(table, th, index); });
    });
  }

  // A generator's variants (non-default options, e.g. ablation arms) are
  // hidden under its row until its "variants" button is pressed.
  function toggleVariants(button) {
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", open ? "true" : "false");
    button.textContent = (open ? "▾" : "▸") + button.textContent.slice(1);
    var key = button.getAttribute("data-variants");
    Array.prototype.forEach.call(document.querySelectorAll("tr[data-variant-of]"), function (tr) {
      if (tr.getAttribute("data-variant-of") === key) { tr.hidden = !open; }
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), init);
  Array.prototype.forEach.call(document.querySelectorAll("button.variants-toggle"), function (b) {
    b.addEventListener("click", function () { toggleVariants(b); });
  });
}());
