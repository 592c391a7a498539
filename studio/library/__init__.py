"""Library: write-back with lineage, PNG metadata, compare and history."""
