// Small behaviours of the runs table and the run overview, without inline scripts (the pages'
// Content-Security-Policy forbids them): select all, the selection count, the page-size menu,
// and the search boxes that narrow a list of columns, params or packages.

const selectAll = document.getElementById("select-all");
const runsForm = document.getElementById("runs-form");

function updateSelection() {
  const boxes = [...runsForm.querySelectorAll("input[name=run_ids]")];
  const count = boxes.filter((b) => b.checked).length;
  document.getElementById("selected-count").textContent = `${count} selected`;
  for (const button of runsForm.querySelectorAll("[data-needs-selection]")) button.disabled = count === 0;
  if (selectAll) {
    selectAll.checked = count > 0 && count === boxes.length;
    selectAll.indeterminate = count > 0 && count < boxes.length;
  }
}

if (runsForm) {
  runsForm.addEventListener("change", (event) => {
    if (event.target === selectAll) {
      for (const box of runsForm.querySelectorAll("input[name=run_ids]")) box.checked = selectAll.checked;
    }
    updateSelection();
  });
  runsForm.addEventListener("submit", (event) => {
    const action = event.submitter?.getAttribute("formaction") || "";
    if (action.endsWith("/delete") && !confirm("Delete the selected runs? They can be restored from the Deleted view.")) {
      event.preventDefault();
    }
  });
  const pageSize = runsForm.querySelector("select.page-size");
  if (pageSize) {
    const urls = Object.fromEntries(pageSize.dataset.urls.trim().split(" ").map((pair) => {
      const at = pair.indexOf("=");
      return [pair.slice(0, at), pair.slice(at + 1)];
    }));
    pageSize.addEventListener("change", () => { location.href = urls[pageSize.value]; });
  }
  updateSelection();
}

// narrow a list by the text typed in its search box
function narrow(input, items) {
  const text = input.value.trim().toLowerCase();
  for (const item of items()) item.hidden = text !== "" && !item.textContent.toLowerCase().includes(text);
}

for (const input of document.querySelectorAll("input.column-search")) {
  const form = input.closest("form");
  input.addEventListener("input", () => narrow(input, () => form.querySelectorAll(".column-groups label")));
}
for (const input of document.querySelectorAll("input.table-search")) {
  const table = document.getElementById(input.dataset.table);
  input.addEventListener("input", () => narrow(input, () => table.querySelectorAll("tr")));
}
