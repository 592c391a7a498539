"""The page itself: a theme that loads no web fonts (nothing on the page may leave the machine), the CSS
(developer view, tables readable at 800 px) and the keys (Ctrl+Enter generates)."""

from __future__ import annotations

from typing import Any

# System fonts only: Gradio's default theme fetches Inter and IBM Plex Mono from fonts.googleapis.com.
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]

CSS = """
body:not(.studio-dev) .dev-only { display: none !important; }
/* Tables keep their header words whole and scroll sideways on narrow screens, instead of stacking letters. */
#explore-table th .header, #reverse-table th .header { white-space: nowrap; word-break: keep-all; }
#explore-table, #reverse-table { overflow-x: auto; }
#create-tokens { text-align: right; opacity: 0.8; }
/* Create's progress and result line stays short: the results under it stay in the first screen. */
#create-info { max-height: 9.5em; overflow-y: auto; }
/* Create's notices (the starter model) are one line; their details open on a click. */
.studio-notice summary { cursor: pointer; }
/* Create's right column (Generate, progress, preview, results) stays in view while the left one scrolls. */
@media (min-width: 1000px) { #create-right { position: sticky; top: 8px; align-self: flex-start; } }
"""

# Ctrl+Enter (Cmd+Enter) in the prompt or negative prompt generates, as in AUTOMATIC1111; Enter alone keeps
# making new lines there. Single-line boxes (Compare's idea, the Library's path) submit on Enter by themselves.
KEYS = """
() => {
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey) || !e.target.closest) return;
    if (!e.target.closest("#create-prompt, #create-negative")) return;
    e.preventDefault();
    const go = document.querySelector("#create-generate");
    if (go) go.click();
  }, true);
}
"""


def page_options() -> dict[str, Any]:
    """launch()'s page arguments (Gradio 6 takes theme, css and js there, not in Blocks)."""
    import gradio as gr

    theme = gr.themes.Default(font=SANS, font_mono=MONO)
    return {"theme": theme, "css": CSS, "js": KEYS}
