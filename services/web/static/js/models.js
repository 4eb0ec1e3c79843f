// The model page's alias form: moving an alias asks first, in a dialog that says from which
// version to which; only the confirmed form is posted (with confirm=yes). Without JavaScript the
// server asks on a page of its own.

const form = document.getElementById("alias-form");
const dialog = document.getElementById("alias-confirm");

if (form && dialog) {
  const current = Object.fromEntries(form.dataset.current.trim().split(" ").filter(Boolean).map((pair) => {
    const at = pair.lastIndexOf("=");
    return [pair.slice(0, at), Number(pair.slice(at + 1))];
  }));
  const aliasInput = document.getElementById("alias-name");
  const versionSelect = document.getElementById("alias-version");
  const name = document.querySelector(".page-title").firstChild.textContent.trim();

  form.addEventListener("submit", (event) => {
    if (form.querySelector("input[name=confirm]")) return; // confirmed: post it
    event.preventDefault();
    const alias = aliasInput.value.trim();
    const version = Number(versionSelect.value);
    const from = current[alias];
    const text = document.getElementById("alias-confirm-text");
    text.replaceChildren();
    const b = (s) => { const node = document.createElement("b"); node.textContent = s; return node; };
    if (from === version) {
      text.append(b(`@${alias}`), ` already points at version ${version}.`);
    } else if (from) {
      text.append(b(`@${alias}`), ` of ${name}: version ${from} → `, b(`version ${version}`), ".");
    } else {
      text.append("New alias ", b(`@${alias}`), " → ", b(`version ${version}`), ` of ${name}.`);
    }
    document.getElementById("alias-confirm-ref").textContent = `${name}@${alias}`;
    dialog.returnValue = "";
    dialog.showModal();
  });

  dialog.addEventListener("close", () => {
    if (dialog.returnValue !== "confirm") return;
    const confirmed = document.createElement("input");
    confirmed.type = "hidden";
    confirmed.name = "confirm";
    confirmed.value = "yes";
    form.append(confirmed);
    form.requestSubmit();
  });
}
