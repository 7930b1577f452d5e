"""Node kinds: one folder per kind, each with a `spec` module (and a `run` module on workers).

Add a node kind:
1. `pipelines/nodes/<name>/spec.py`: a params model (subclass `pipelines.params.Params`; every
   field made with `param(...)`: a title, a plain description, bounds, defaults) and
   `SPEC = NodeSpec(...)` with typed ports, label, category, help, icon, queue,
   `implementation="pipelines.nodes.<name>.run:run"`, and `estimate`/`facts`/`check` hooks
   where memory or static cross-checks matter. No heavy imports in this module.
2. `pipelines/nodes/<name>/run.py`: `run(ctx, inputs, params) -> {port: ArtifactOut}`; heavy
   libraries are imported here, inside the function or module (workers only).
3. List the spec in `pipelines/registry.py` (`BUILTIN_SPECS`, palette order).
4. Tests: `tests/pipelines/nodes/test_<name>.py` naming the kind; `tests/pipelines/test_registry.py`
   then checks the spec, its form, its implementation module and that a test mentions it.
"""
