"""The `source_documents` node kind: `spec` (ports, params, UI) and `run` (implementation, workers only)."""
