// Progressive enhancement: show an item only while its relevance condition holds.
// The conditions come from /relevance.js (window.SurveyRelevance), rendered from the
// instrument by instruments.relevance.to_javascript; the server applies them again.
(function () {
  "use strict";
  var form = document.querySelector("form.survey");
  if (!form) { return; }
  var data = document.getElementById("survey-answers");
  var prior = data ? JSON.parse(data.textContent || "{}") : {};
  var rules = window.SurveyRelevance || {};
  var blocks = Array.prototype.slice.call(form.querySelectorAll("[data-item]"));

  function value(v) { var n = Number(v); return v !== "" && !isNaN(n) ? n : v; }

  function update() {
    var answers = Object.assign({}, prior);
    blocks.forEach(function (block) {
      var id = block.getAttribute("data-item");
      var rule = rules[id];
      var show = !rule || rule(answers);
      block.hidden = !show;
      var inputs = block.querySelectorAll("input, textarea, select");
      Array.prototype.forEach.call(inputs, function (el) {
        el.disabled = !show;  // disabled fields are not sent
        if (block.getAttribute("data-required") === "1" && !/__missing$/.test(el.name) && el.type !== "number") {
          el.required = show;
        }
      });
      if (!show) { return; }
      Array.prototype.forEach.call(inputs, function (el) {
        if ((el.type === "radio" || el.type === "checkbox") && !el.checked) { return; }
        if (el.value === "") { return; }
        answers[id] = value(el.value);
      });
    });
  }

  // after a refused page, start at the list of problems (it links to each question)
  var summary = document.querySelector(".error-summary");
  if (summary) { summary.focus(); }

  form.addEventListener("change", update);
  form.addEventListener("input", update);
  update();
})();
