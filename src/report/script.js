// loraeval report: shows one cell's detail at a time (the one clicked in the grid, the heatmap or the
// recommendation; the pick's at first). Without this script every detail stays visible. Sets
// body[data-ready="1"] once it has run, so a DOM dump shows that it ran without error.
(function () {
  "use strict";
  var details = Array.prototype.slice.call(document.querySelectorAll("article.detail"));
  var targets = Array.prototype.slice.call(document.querySelectorAll("[data-target]"));

  function show(id, scroll) {
    var found = details.some(function (d) { return d.id === id; });
    details.forEach(function (d) { d.hidden = found && d.id !== id; });
    targets.forEach(function (t) {
      t.classList.toggle("selected", t.getAttribute("data-target") === id);
    });
    var section = document.getElementById("details");
    if (scroll && section) { section.scrollIntoView({ behavior: "smooth", block: "start" }); }
  }

  targets.forEach(function (t) {
    t.addEventListener("click", function (event) {
      event.preventDefault();
      show(t.getAttribute("data-target"), true);
    });
    t.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        show(t.getAttribute("data-target"), true);
      }
    });
  });

  var all = document.getElementById("show-all");
  if (all) {
    all.addEventListener("click", function () {
      details.forEach(function (d) { d.hidden = false; });
    });
  }

  var initial = document.body.getAttribute("data-initial");
  if (initial) { show(initial, false); }
  document.body.dataset.ready = "1";
})();
