/* Admin: a click in a read-only text box marked data-select-on-click selects all of it (the widget's embed
 * snippet). A file, not an onclick attribute: the admin allows scripts from our own origin only. */
document.addEventListener("click", function (e) {
  const box = e.target.closest && e.target.closest("[data-select-on-click]");
  if (box) box.select();
});
