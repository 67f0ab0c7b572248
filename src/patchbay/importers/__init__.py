"""Import: an API's own description (OpenAPI, Swagger) as a curated, commented patchbay config.

Beside `spec`: it produces config data and YAML and knows nothing of the runtime.
"""

from patchbay.importers._openapi import Imported, Skipped, import_openapi, param_name, tool_name
from patchbay.importers._source import UnreadableSpec, load_document

__all__ = [
    "Imported",
    "Skipped",
    "UnreadableSpec",
    "import_openapi",
    "load_document",
    "param_name",
    "tool_name",
]
