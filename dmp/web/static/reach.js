/* The lookalike reach slider: show the chosen share next to it. */
(function () {
  "use strict";
  var slider = document.getElementById("reach"), out = document.getElementById("reach-out");
  if (!slider) return;
  function show() { out.textContent = slider.value; }
  slider.addEventListener("input", show);
  show();
})();
