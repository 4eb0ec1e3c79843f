// The Media tab's step sliders: moving one picks that key's step and reloads the page with it in
// the URL (?tab=media&key=K&step=N), so the view is shareable; the select beside it does the same.
for (const form of document.querySelectorAll("form.media-steps")) {
  const slider = form.querySelector("input.media-step");
  const select = form.querySelector("select[name=step]");
  const steps = slider.dataset.steps.split(",");
  slider.addEventListener("input", () => { select.value = steps[Number(slider.value)]; });
  slider.addEventListener("change", () => form.submit());
  select.addEventListener("change", () => form.submit());
}
