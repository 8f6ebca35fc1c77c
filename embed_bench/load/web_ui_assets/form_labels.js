// embed-bench: the start form's labels for embed-bench's options (embed_bench/load/web_ui.py).
//
// Locust's page derives each custom field's label from its name ("sloP95Ms" -> "Slo P9 5Ms") and
// appends the option's help in parentheses. This script puts the label of embed_bench.core.options
// (OptionSpec.form_label) in place of the derived one, "SLO p95 (ms) - the help", and gives the
// field the whole text as its tooltip (an empty field's label is cut at the field's width). The
// field's name, and so what the form posts, is left alone. React re-creates the form (a new test, a
// theme switch): a MutationObserver labels every field it adds.
(() => {
  const source = document.getElementById("embed-bench-form-labels");
  if (!source) return;
  const labels = JSON.parse(source.textContent);
  // Locust's own helper (webui: toTitle), applied to the field's camelCase name.
  const locustLabel = (name) =>
    name.replace(/([a-z0-9])([A-Z0-9])/g, "$1 $2").replace(/^./, (first) => first.toUpperCase());

  const relabelText = (node, derived, ours) => {
    const text = node.nodeValue;
    if (text === derived) {
      node.nodeValue = ours;
    } else if (text.startsWith(`${derived} (`) && text.endsWith(")")) {
      node.nodeValue = `${ours} \u2014 ${text.slice(derived.length + 2, -1)}`;
    }
  };

  const relabel = () => {
    for (const [name, ours] of Object.entries(labels)) {
      const derived = locustLabel(name);
      for (const input of document.querySelectorAll(`input[name="${name}"]`)) {
        const field = input.closest(".MuiFormControl-root") || input.parentElement;
        if (!field) continue;
        // The label, and the outline's notch (a legend holding the same text, sized by it).
        const walker = document.createTreeWalker(field, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          if (node.parentElement && node.parentElement.closest("label, legend")) {
            relabelText(node, derived, ours);
          }
        }
        const label = field.querySelector("label");
        if (label) field.title = label.textContent.replace(/\s*\*$/, "");
        field.dataset.embedBenchOption = name;
      }
    }
  };

  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      relabel();
    });
  };
  new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true });
  relabel();
})();
