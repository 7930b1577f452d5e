"""Artifact types: what flows along an edge. An edge is valid only when both ports agree."""

from __future__ import annotations

from enum import StrEnum


class ArtifactType(StrEnum):
    DOCUMENTS = "Documents"
    DATASET = "Dataset"
    MODEL = "Model"  # carries its precision / quantization in its metadata
    ADAPTER = "Adapter"
    VECTOR_INDEX = "VectorIndex"
    SERVICE = "Service"
    ENDPOINT = "Endpoint"
    REPORT = "Report"
