"""JSON Schemas of wire models, gathered under ``#/components/schemas`` of a document.

Both API documents (OpenAPI 3.1 and AsyncAPI 3) keep their schemas there, so
one builder serves both.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

__all__ = ["Components"]

_REF = "#/components/schemas/{model}"


class Components:
    """The models a document names, and their schemas once all are known."""

    def __init__(self) -> None:
        self._models: dict[type[BaseModel], None] = {}

    def ref(self, model: type[BaseModel]) -> type[BaseModel]:
        self._models.setdefault(model, None)
        return model

    def build(self) -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
        """(model -> ``{"$ref": ...}``, the schemas by name)."""
        keys, top = models_json_schema([(m, "validation") for m in self._models], ref_template=_REF)
        refs: dict[type[BaseModel], dict[str, Any]] = {}
        for (model, _), ref in keys.items():
            if isinstance(model, type) and issubclass(model, BaseModel):
                refs[model] = ref
        return refs, dict(top.get("$defs", {}))
