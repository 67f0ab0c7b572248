"""A JSON Schema given in the config (`response.expect`, `returns`), checked as a schema at load."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator


def _valid_schema(value: dict[str, Any]) -> dict[str, Any]:
    # Imported here, not at module import: only configs that declare a schema pay for it
    # (the CLI start-up is measured).
    import jsonschema_rs

    try:
        # Compiling checks the schema against the draft 2020-12 meta-schema and resolves its
        # references; offline: a reference to a URL is an error, never a download.
        jsonschema_rs.Draft202012Validator(value, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
        path = getattr(exc, "instance_path", None) or []
        where = "/".join(str(p) for p in path) or "(top)"
        why = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
        raise ValueError(
            f"not a valid JSON Schema (draft 2020-12) at {where}: {why[:200]}"
        ) from None
    except ValueError as exc:  # e.g. a regex pattern the validator cannot compile
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not a valid JSON Schema (draft 2020-12): {why[:200]}") from None
    return value


# A JSON Schema mapping (draft 2020-12), checked when loaded; references stay inside it.
JsonSchema = Annotated[dict[str, Any], AfterValidator(_valid_schema)]
