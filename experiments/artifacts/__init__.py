"""The bottom layer: atomic writes, checksums and run-directory paths."""
