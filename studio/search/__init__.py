"""Search: CLIP embeddings, the Chroma store, typed results and the four searches."""
