"""The `source_dataset` node kind: `spec` (ports, params, UI) and `run` (implementation, workers only)."""
