"""The `source_model` node kind: `spec` (ports, params, UI) and `run` (implementation, workers only)."""
