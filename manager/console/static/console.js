// The console's only script, served from the console itself (its Content-Security-Policy allows no other):
// a button with data-copy="<id>" copies that field's value, as the evidence page's digest "Copy" button does.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  navigator.clipboard.writeText(field.value).then(
    () => { button.textContent = "Copied"; },
    () => { field.select(); button.textContent = "Press Ctrl-C"; },
  );
});
