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


class DiskFullError(StudioError):
    """The disk (or the user's quota) is full: nothing more can be written until space is freed."""


# How a full disk reads in the text of errors that lost their errno on the way (Rust, SQLite, subprocesses).
_FULL_TEXT = ("no space left on device", "os error 28", "errno 28", "database or disk is full", "disk quota exceeded",
              "os error 122", "errno 122")
# Chroma's compaction failure says no more than this; with the disk (nearly) full, that is why it failed.
_MAYBE_FULL_TEXT = ("error in compaction", "failed to apply logs", "disk i/o error")
LOW_SPACE = 64 * 2**20  # bytes free below which a write failure without an errno is put down to a full disk


def disk_full(exc: BaseException | None, free_bytes: int | None = None) -> bool:
    """Whether `exc` (or any exception it was raised from or during) is a full disk: errno ENOSPC or EDQUOT,
    or their words in its text; or a vague write failure (Chroma's compaction error) while `free_bytes`,
    the space left where it was writing, is below LOW_SPACE."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if any(words in text for words in _FULL_TEXT):
            return True
        if free_bytes is not None and free_bytes < LOW_SPACE and any(words in text for words in _MAYBE_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(folder: object) -> int | None:
    """The bytes free on the disk holding `folder` (or its nearest existing parent); None when unknown."""
    import shutil
    from pathlib import Path

    path = Path(str(folder)).expanduser()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_full_message(where: object, doing: str, after: str) -> str:
    """What to say when the disk is full: where, while doing what, how much is free, and what to do."""
    free = free_bytes(where)
    left = f" ({free / 2**20:,.0f} MB free now)" if free is not None else ""
    return (f"The disk is full: no space was left on the disk holding {where}{left} while {doing}. Free some space "
            f"there (or point STUDIO_HOME at a bigger disk), then {after}.")


class StoreBusyError(StoreUnavailableError):
    """Another process holds the embedded store (studio.search.lock): `holder` says who (pid, what, url)."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class StoreDamagedError(StoreUnavailableError):
    """The store's files are damaged (studio.upkeep.check says how); `python -m studio check --repair` mends it."""
