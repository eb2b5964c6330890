// Keyboard: a key presses the element marked data-key="<key>" (F fraud, L legitimate,
// N next alert, Esc back to the queue). While the analyst types in a field, keys are text;
// Esc leaves the field (keeping what was typed), so F or L can follow.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const field = event.target.closest && event.target.closest("input, textarea, select");
  if (field) {
    if (event.key === "Escape") field.blur();
    return;
  }
  const target = document.querySelector(`[data-key="${event.key.toLowerCase()}"]`);
  if (target && !target.disabled) {
    event.preventDefault();
    target.click();
  }
});
