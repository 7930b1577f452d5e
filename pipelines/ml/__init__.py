"""Machine-learning building blocks behind the model, dataset, training and evaluation nodes.

Modules that import torch / transformers / peft (``demo``, ``loading``, ``train``,
``evaluation``) are imported only by node implementations on workers. ``datasets`` and
``modelinfo`` are pure Python (JSON, CSV, safetensors headers), so the web process may use
them to validate uploads and inspect model folders without loading torch.
"""
