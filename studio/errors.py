"""Errors whose messages say what to do next."""

from __future__ import annotations


class StudioError(Exception):
    """Base class: the message is meant for the user, as is."""


class InputError(StudioError, ValueError):
    """The user gave something we cannot use (empty text, a corrupt image, a bad path)."""


class ModelMissingError(StudioError):
    """A model's weights are not where we looked, and we may not or could not download them."""


class StoreMismatchError(StudioError):
    """The store was built with another CLIP model (vectors of two models never mix)."""


class StoreUnavailableError(StudioError):
    """The Chroma store cannot be opened or reached."""


def bounded_text(text: str, limit: int, empty: str, too_long: str) -> str:
    """`text` when it is not empty and at most `limit` characters; else InputError with `empty`, or
    with `too_long` formatted with n (its length) and limit."""
    if not text:
        raise InputError(empty)
    if len(text) > limit:
        raise InputError(too_long.format(n=len(text), limit=limit))
    return text


class GpuMemoryError(StudioError):
    """The GPU ran out of memory; the job was stopped, the cache emptied, and the next job works."""


GPU_MEMORY_ADVICE = ("Try fewer images at once, a smaller size, STUDIO_OFFLOAD=model (or sequential on 8 GB "
                     "cards), or close other programs that use the GPU. Your prompt and settings are kept; the next "
                     "job starts clean.")


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA), a CPU allocator failure, or llama.cpp failing to allocate VRAM: told
    by type name and message, so this module imports no torch."""
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "cudaerrormemoryallocation" in text)


def gpu_memory_error(what: str, exc: BaseException) -> GpuMemoryError:
    """The user's words for an out-of-memory during `what` (e.g. "decoding the images")."""
    first = " ".join(str(exc).split())[:160]
    return GpuMemoryError(f"Out of GPU memory while {what} ({first}). {GPU_MEMORY_ADVICE}")
