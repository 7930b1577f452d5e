"""Quantization: the formulas, packed storage, quantized layers, save/load and the reports.

Pure-Python modules (``compare``, ``texts``) may be imported anywhere, the web included.
The others import torch at module level and are imported only by node implementations on
workers (``pipelines.nodes.quantize.run``) and by the nodes that load quantized models:

- ``formulas``: symmetric / asymmetric integer quantization, absmax activations, absmean ternary;
- ``packing``: ternary weights 5 per byte (base 3), int4 weights 2 per byte;
- ``layers``: ``QuantLinear`` (int8/int4), ``QuantEmbedding``, ``BitLinear`` (packed ternary),
  ``TernaryQATLinear`` (straight-through estimator);
- ``convert``: which modules to quantize and swapping them in place;
- ``backends``: bitsandbytes (NF4/FP4/LLM.int8()), torchao int8 weight-only, dynamic int8;
- ``qat``, ``mixed``: quantization-aware training, the per-layer mixed-precision planner;
- ``methods``: one entry point, ``quantize(model, options, data, hooks)``;
- ``io``: ``save_quantized`` / ``load_quantized`` (safetensors + ``quantization_config.json``);
- ``metrics``: bytes, bits per weight, per-layer error, perplexity, generation speed.

Pure: ``texts`` (calibration / held-out text), ``compare`` (the seed's comparison table).
"""
