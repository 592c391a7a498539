"""Shared by the tabs: readable errors, the GPU queue (and ZeroGPU), work streamed from a thread, cancel."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from studio.errors import InputError, StudioError, disk_full, gpu_memory_error, is_out_of_memory
from studio.studio import open_image

log = logging.getLogger("studio.ui")

# GPU work (the LLM, SDXL) runs one job at a time in its own queue; searches keep the default one.
GPU = {"concurrency_limit": 1, "concurrency_id": "gpu"}


def message_for(exc: BaseException) -> str:
    """What the page says: a StudioError's own message; anything else named, with where to look."""
    if isinstance(exc, StudioError):
        return str(exc)
    if is_out_of_memory(exc):  # one the services did not turn into a GpuMemoryError themselves
        return str(gpu_memory_error("running this job", exc))
    if disk_full(exc):  # ENOSPC anywhere in the chain, or its words in a store's error text
        return (f"The disk is full ({type(exc).__name__}: {str(exc)[:200]}): the studio could not write what this "
                "needed. Free some space on the disk holding STUDIO_HOME and the temporary folder, then try again.")
    # Not "nothing was lost": an unforeseen error may have stopped a write half-way; the terminal says where.
    return (f"Something went wrong: {type(exc).__name__}: {exc}. The details are in the terminal that runs the "
            "studio.")


class LastErrors:
    """The last error message of each browser session. An API client gets the error raised, as before;
    the page runs the event's .failure() listener (said_in), which puts the message in the tab's own
    status line, where it stays until the next action (a toast fades)."""

    def __init__(self, keep: int = 1_000) -> None:
        self._last: dict[str, str] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def record(self, message: str) -> None:
        from gradio.context import LocalContext

        session = session_of(LocalContext.request.get(None))
        if session is None:
            return
        with self._lock:
            self._last.pop(session, None)
            self._last[session] = message
            while len(self._last) > self._keep:
                self._last.pop(next(iter(self._last)))

    def take(self, request: gr.Request | None) -> str:
        with self._lock:
            message = self._last.pop(session_of(request) or "", None)
        return f"⚠️ {message}" if message else "⚠️ That did not work; the details are in the studio's terminal."


LAST_ERRORS = LastErrors()


def _to_gr_error(exc: Exception, toast: bool = True) -> gr.Error:
    """toast=False: the page shows no toast (the tab's status line, said_in, is the one place it is said); an
    API client gets the error raised all the same."""
    if not isinstance(exc, StudioError):
        log.error("unexpected error in a handler", exc_info=exc)
    LAST_ERRORS.record(message_for(exc))
    return gr.Error(message_for(exc), print_exception=False, visible=toast)


def said_in(event: Any, status: Any) -> Any:
    """On failure, the tab's status line says why (inputs and earlier results are left as they were)."""
    def say(request: gr.Request = None) -> str:
        return LAST_ERRORS.take(request)

    return event.failure(say, None, status, api_visibility="private", queue=False, show_progress="hidden")


def guarded(fn: Callable[..., Any], toast: bool = True) -> Callable[..., Any]:
    """A handler whose failures reach the page as a message, never a stack trace. Keeps the
    signature (gr.Progress and gr.Request parameters are found through __wrapped__). toast=False: for an event
    whose status line says the error (said_in), so that it is said once."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _to_gr_error(exc, toast) from None
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _to_gr_error(exc, toast) from None
    return call


def on_gpu(fn: Callable[..., Any], duration: int = 120) -> Callable[..., Any]:
    """ZeroGPU (Hugging Face Spaces) lends a GPU only inside functions wrapped by `spaces.GPU`;
    elsewhere the `spaces` package is absent and the handler runs as it is."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


def sdxl_missing(studio: Any) -> bool:
    """No SDXL on this machine (nor loaded): Generate and Compare are shown disabled, the banner says why.
    (A hub id is not fetched from the page: 7 GB is `python -m studio models --download sdxl`'s to fetch.)"""
    return studio.sdxl_missing()


def handler(fn: Callable[..., Any], gpu: bool = False, toast: bool = True) -> Callable[..., Any]:
    return on_gpu(guarded(fn, toast)) if gpu else guarded(fn, toast)


def quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A handler whose errors are said in its tab's status line only (said_in): no toast over it."""
    return handler(fn, toast=False)


def uploaded_image(payload: Any) -> Any:
    """An upload as the event's raw payload (preprocess=False) -> a PIL image, or InputError in words.
    Raw, because gradio's own preprocessing answers a broken file with its own error, not ours."""
    if not payload:
        raise InputError("Drop an image first (PNG, JPEG or WebP).")
    if isinstance(payload, dict):
        path, name = payload.get("path"), payload.get("orig_name") or "the uploaded file"
    else:
        path, name = str(payload), "the uploaded file"
    try:
        return open_image(path, name=name)
    except InputError as exc:  # the message would name gradio's temporary copy: name the user's file instead
        raise InputError(f"Could not read {name} as an image: use a PNG, JPEG or WebP file that opens in an "
                         "image viewer.") from exc


class Cancels:
    """One cancel flag per browser session (or API client): the Cancel button sets the flag of the
    job that session is running; SDXL stops at its next step."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, session: str | None) -> threading.Event:
        with self._lock:
            flag = self._flags[session or ""] = threading.Event()
            return flag

    def cancel(self, session: str | None) -> bool:
        with self._lock:
            flag = self._flags.get(session or "")
        if flag is None:
            return False
        flag.set()
        return True

    def stopped_within(self, session: str | None, seconds: float) -> bool | None:
        """Cancel the session's job and wait up to `seconds` for it to end: None, nothing ran; True, it ended
        (its own last message has gone to the page); False, it is still stopping."""
        with self._lock:
            flag = self._flags.get(session or "")
        if flag is None:
            return None
        flag.set()
        deadline = threading.Event()
        for _ in range(int(seconds / 0.05)):
            with self._lock:
                if self._flags.get(session or "") is not flag:
                    return True
            deadline.wait(0.05)
        return False

    @contextlib.contextmanager
    def job(self, session: str | None) -> Iterator[threading.Event]:
        """A new flag for the session's job, released when the job ends however it ends."""
        flag = self.new(session)
        try:
            yield flag
        finally:
            self.release(session, flag)

    def release(self, session: str | None, flag: threading.Event) -> None:
        """The job that owned `flag` ended: Cancel has nothing to stop (unless a newer job took its place)."""
        with self._lock:
            if self._flags.get(session or "") is flag:
                del self._flags[session or ""]


def session_of(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None) if request is not None else None


def streamed(work: Callable[[Callable[..., None]], Any]) -> Iterator[tuple[str, Any]]:
    """Run `work(emit)` in a thread and yield what it emits as ("event", payload), then ("done", result).
    Lets a generator handler show previews the model reports from inside its loop."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def run() -> None:
        try:
            events.put(("done", work(lambda *payload: events.put(("event", payload)))))
        except BaseException as exc:  # handed to the handler's thread, which turns it into a message
            events.put(("error", exc))

    threading.Thread(target=run, daemon=True, name="studio-job").start()
    while True:
        kind, item = events.get()
        if kind == "error":
            raise item
        yield kind, item
        if kind == "done":
            return


def plain_json(value: Any) -> Any:
    """A result dict for gr.JSON with each `path` key renamed `file`: gradio takes a {"path": ...} dict
    for a file to copy into its cache and serve, which is not what a raw result means."""
    if isinstance(value, dict):
        return {("file" if k == "path" else k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v) for v in value]
    return value


def seed_or_none(value: Any) -> int | None:
    """The seed box: empty or negative means a random seed (recorded with the result)."""
    if value is None or value == "":
        return None
    try:
        seed = int(float(value))
    except (TypeError, ValueError) as exc:
        raise InputError(f"seed={value!r}: use a whole number, or -1 for a random seed.") from exc
    return None if seed < 0 else seed


def as_int(value: Any, name: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}={value!r}: use a whole number.") from exc


def gradio_cache() -> Path:
    """Where Gradio writes every picture and upload it serves (GRADIO_TEMP_DIR, else the temporary folder)."""
    import os
    import tempfile

    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def no_room_to_show(images: list[Any], free: int | None = None) -> str | None:
    """None when Gradio's cache has room to write `images` for the page (it must, to show them); else what to
    say instead of Gradio's own "Could not postprocess output component". `free`: bytes free (measured when
    None)."""
    from studio.errors import free_bytes

    free = free_bytes(gradio_cache()) if free is None else free
    need = sum(getattr(im, "width", 0) * getattr(im, "height", 0) * 3 for im in images) + 2**20  # raw, at worst
    if free is None or free >= need:
        return None
    return (f"The disk is full: the images cannot be shown, because the page's server writes them to "
            f"{gradio_cache()} first, and {free / 2**20:,.1f} MB is free there. Free some space there; what was "
            "saved is listed below, and History shows it.")
