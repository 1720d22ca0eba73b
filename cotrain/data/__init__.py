"""Data engine: records -> conversations -> encoded samples -> batches (see docs/design-notes.md)."""
