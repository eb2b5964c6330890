// Keyboard: a key presses the element marked data-key="<key>" (F fraud, L legitimate,
// N next alert, Esc back to the queue), unless the analyst is typing in a field.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const typing = event.target.closest && event.target.closest("input, textarea, select");
  if (typing && event.key !== "Escape") return;
  const target = document.querySelector(`[data-key="${event.key.toLowerCase()}"]`);
  if (target && !target.disabled) {
    event.preventDefault();
    target.click();
  }
});
