"""The `serve_rag` node kind: `spec` (ports, params, UI) and `run` (implementation, workers only)."""
