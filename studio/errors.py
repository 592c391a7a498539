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


class StoreBusyError(StoreUnavailableError):
    """Another process holds the embedded store (studio.search.lock): `holder` says who (pid, what, url)."""

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class StoreDamagedError(StoreUnavailableError):
    """The store's files are damaged (studio.upkeep.check says how); `python -m studio check --repair` mends it."""
