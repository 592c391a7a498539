"""The LoRA picker under Create's Prompt box: the files in models/loras (re-read when the list is opened), and
Insert, which appends `<lora:NAME:0.8>` to the prompt."""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

INSERT_WEIGHT = 0.8  # a common starting weight; the user edits it in the prompt


def lora_tag(name: str, weight: float = INSERT_WEIGHT) -> str:
    return f"<lora:{name}:{weight:g}>"


def with_lora(prompt: str | None, name: str | None) -> str:
    """The prompt with the tag appended (after a comma when the prompt has words), unchanged without a name."""
    text = (prompt or "").rstrip()
    if not name:
        return prompt or ""
    tag = lora_tag(name)
    if not text:
        return tag
    return f"{text} {tag}" if text.endswith(",") else f"{text}, {tag}"


def _info(found: list[str]) -> str:
    return "in models/loras" if found else "none yet: put SDXL LoRA .safetensors files in models/loras"


def lora_picker(names: Callable[[], list[str]], prompt: gr.Textbox) -> gr.Dropdown:
    """A Dropdown of the LoRA names and an Insert button writing into `prompt`; self-contained, private events."""
    def choices() -> Any:
        found = names()
        return gr.Dropdown(choices=found, info=_info(found))

    found = names()
    with gr.Row(equal_height=True):
        picked = gr.Dropdown(choices=found, value=None, label="LoRA", scale=3, elem_id="create-lora", info=_info(found))
        insert = gr.Button("Insert", size="sm", scale=0, min_width=90, elem_id="create-lora-insert")
    picked.focus(choices, None, picked, api_visibility="private", queue=False, show_progress="hidden")
    insert.click(with_lora, [prompt, picked], prompt, api_visibility="private", queue=False)
    return picked
