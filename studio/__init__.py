"""Prompt Studio: a local, offline prompt studio over DiffusionDB, CLIP, Chroma, a GGUF LLM and SDXL."""

__version__ = "0.1.0"
