"""Data sets the project generates itself (no download)."""
