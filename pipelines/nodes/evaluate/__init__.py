"""The `evaluate` node kind: `spec` (ports, params, UI) and `run` (implementation, workers only)."""
