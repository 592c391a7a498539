"""Create's batch over a wildcard prompt: one image per expansion (as sd-dynamic-prompts does in A1111), each
with its own seed (the request's seeds in order), merged into one GenerationResult for the page."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from studio.generate.request import GenerationRequest, GenerationResult


def each_expansion(request: GenerationRequest, prompts: list[str], notes: list[str],
                   generate_one: Callable[[GenerationRequest], GenerationResult],
                   cancel: Any = None) -> GenerationResult:
    """`request`: validated, its prompt the template and n the number of expansions. Image i is prompts[i] at
    request.seeds[i]. A cancel keeps the images already made (each was saved as it was made)."""
    made: list[GenerationResult] = []
    for prompt, seed in zip(prompts, request.seeds):
        if cancel is not None and cancel.is_set():
            break
        result = generate_one(replace(request, prompt=prompt, seed=seed, n=1))
        if result.cancelled:
            break
        made.append(result)
    if not made:  # cancelled before the first image was done: nothing saved
        return GenerationResult(replace(request, n=0), [], "", "", cancelled=True, steps_done=0)
    done = len(made)
    seconds = sum(r.seconds for r in made)
    steps = sum(r.steps_done for r in made)
    lines = [f"one image per expansion of “{request.prompt}”:"]
    lines += [f"seed {r.request.seed}: {r.request.prompt}" for r in made]
    if done < len(prompts):
        lines.append(f"cancelled after {done} of {len(prompts)} expansions (those made are saved)")
    return GenerationResult(
        replace(request, n=done), [img for r in made for img in r.images], made[0].model, made[0].device,
        seconds=seconds, steps_done=steps, its=steps / seconds if seconds else 0.0,
        saved=[s for r in made for s in r.saved], notes=notes + lines + [n for r in made for n in r.notes],
        loras=made[0].loras, chunks=max(r.chunks for r in made), prompts=[r.request.prompt for r in made])
