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
/* Markdown tables (the Library's counts, the models) and table cells break between words, never inside one
   ('recor ds'); a word longer than its column (a model's path) still wraps rather than overflowing. */
.prose table th, .prose table td { word-break: normal !important; overflow-wrap: break-word !important; hyphens: none; }
.prose table th { white-space: nowrap; }
#library-models td:last-child { overflow-wrap: anywhere !important; }  /* long paths, in the one wide column */
/* Compare: the three pictures share one height (letterboxed, whatever their shape or label), and the word diff
   wraps between words only. */
.compare-image img { height: 300px !important; width: 100%; object-fit: contain; }
.compare-diff, .compare-diff * { word-break: normal !important; overflow-wrap: break-word !important; }
/* At 800 px Explore keeps match, prompt, seed and size in view: the other columns (images, cfg, steps, sampler,
   source) step aside; a click on a row still picks every setting. */
@media (max-width: 1000px) {
  #explore-table th[data-heading="2"], #explore-table [role="gridcell"][data-col="2"],
  #explore-table th[data-heading="4"], #explore-table [role="gridcell"][data-col="4"],
  #explore-table th[data-heading="5"], #explore-table [role="gridcell"][data-col="5"],
  #explore-table th[data-heading="6"], #explore-table [role="gridcell"][data-col="6"],
  #explore-table th[data-heading="8"], #explore-table [role="gridcell"][data-col="8"] { display: none !important; }
  #explore-table table.header-table { width: auto !important; }
}
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
