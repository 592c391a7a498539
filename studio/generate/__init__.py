"""Generate: SDXL requests, loading and running, TAESDXL previews. Knows nothing of Chroma."""
