"""Rewrite: the LLM backend seam and its llama-cpp backend, the RAG prompt, and the Rewriter."""
