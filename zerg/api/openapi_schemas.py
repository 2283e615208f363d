"""The JSON Schemas of the OpenAPI document, from the pydantic models through pydantic's hooks.

What the models' own schema cannot say is said while pydantic generates it,
by a ``GenerateJsonSchema`` subclass: request text may not hold NUL and
free-form objects are checked to any depth (``schemas.Storable``), and an
agent's model must be one the app's providers offer (``schemas.OfferedModel``),
and an MCP server's transport is ``stdio`` only where MCP_ALLOW_STDIO allows
it (``schemas.StdioTransport``).
The rest sits on the models themselves (``WithJsonSchema``, ``json_schema_extra``).
Query models become parameters, where a value is absent or text, never ``null``.
"""

from __future__ import annotations

from typing import Any
from typing import ClassVar

from pydantic import BaseModel
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from pydantic.json_schema import JsonSchemaMode
from pydantic.json_schema import JsonSchemaValue
from pydantic.json_schema import models_json_schema
from pydantic_core import core_schema

from zerg.schemas import NO_NUL
from zerg.schemas import OFFERED_MODEL
from zerg.schemas import STDIO_TRANSPORT
from zerg.schemas import Id
from zerg.schemas import Storable

REF_TEMPLATE = "#/components/schemas/{model}"
STORABLE_JSON = "StorableJSON"


class DocumentJsonSchema(GenerateJsonSchema):
    """pydantic's generator, saying also what ``Storable`` and ``OfferedModel`` check in code."""

    offered_models: ClassVar[tuple[str, ...]] = ()
    stdio_allowed: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # For each model being generated, whether its text must be storable.
        self._storable: list[bool] = []

    @classmethod
    def offering(cls, model_ids: list[str], stdio: bool) -> type[DocumentJsonSchema]:
        """Return this generator for an app whose providers offer ``model_ids``.

        ``stdio``: whether the app may start stdio MCP servers (MCP_ALLOW_STDIO).
        """
        fields = {"offered_models": tuple(model_ids), "stdio_allowed": stdio}
        return type(cls.__name__, (cls,), fields)

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        if schema.get("metadata", {}).get(STDIO_TRANSPORT) and not self.stdio_allowed:
            schema = {**schema, "expected": [v for v in schema["expected"] if v != "stdio"]}
        return super().literal_schema(schema)

    def _in_storable_request(self) -> bool:
        return bool(self._storable) and self._storable[-1]

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        storable = self.mode == "validation" and issubclass(schema["cls"], Storable)
        self._storable.append(storable)
        try:
            return super().model_schema(schema)
        finally:
            self._storable.pop()

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        json_schema = super().str_schema(schema)
        if self._in_storable_request() and "pattern" not in json_schema:
            json_schema["pattern"] = NO_NUL
        if schema.get("metadata", {}).get(OFFERED_MODEL):
            json_schema["enum"] = list(self.offered_models)
        return json_schema

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        values = schema.get("values_schema", {"type": "any"})
        if self._in_storable_request() and values["type"] == "any":
            # Free-form JSON: storable to any depth, keys included.
            return {
                "type": "object",
                "propertyNames": {"pattern": NO_NUL},
                "additionalProperties": {"$ref": self.ref_template.format(model=STORABLE_JSON)},
            }
        return super().dict_schema(schema)


def storable_json() -> dict[str, Any]:
    """Describe any JSON value a request may carry in an object: no NUL in text or keys."""
    ref = {"$ref": REF_TEMPLATE.format(model=STORABLE_JSON)}
    return {
        "description": "Any JSON value, but no text (keys included) may contain NUL.",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": ref},
            {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": ref},
        ],
    }


def component_schemas(
    models: list[tuple[type[BaseModel], JsonSchemaMode]], model_ids: list[str], stdio: bool
) -> dict[str, Any]:
    """Return the components: each model's schema as pydantic generates it, and StorableJSON."""
    generator = DocumentJsonSchema.offering(model_ids, stdio)
    _, top = models_json_schema(models, ref_template=REF_TEMPLATE, schema_generator=generator)
    components: dict[str, Any] = {**top["$defs"], STORABLE_JSON: storable_json()}
    return dict(sorted(components.items()))


class QueryJsonSchema(GenerateJsonSchema):
    """A query model's fields as parameter schemas: absent or text, so no ``null`` and no title."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default") is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def query_parameters(model: type[BaseModel], page_cap: int) -> list[dict[str, Any]]:
    """Describe each field of a query model as a query parameter."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, schema_generator=QueryJsonSchema)
    required = set(schema.get("required", ()))
    notes = {
        "skip": "How many items to pass over.",
        "limit": f"The most items to return; more than {page_cap} returns {page_cap}.",
    }
    parameters = []
    for name, field in schema["properties"].items():
        description = field.pop("description", None) or notes.get(name)
        if description is None and name.endswith("_id"):
            description = f"Only those of this {name.removesuffix('_id')}."
        if description is None and name == "status":
            description = "Only those with this status."
        parameter: dict[str, Any] = {"name": name, "in": "query", "schema": field}
        parameter["required"] = name in required
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def path_parameters(names: list[str]) -> list[dict[str, Any]]:
    """Describe the path's ids, each a ``schemas.Id``."""
    id_schema = TypeAdapter(Id).json_schema()
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"The {name.removesuffix('_id')}'s id.",
            "schema": id_schema,
            "example": 1,
        }
        for name in names
    ]
