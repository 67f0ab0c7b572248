"""Response transformation for the LLM: root, fields, strip, summarize, size cap, error words."""

from patchbay.transform._summarize import cap_result, json_size, to_jsonable
from patchbay.transform._transform import (
    CompiledResponse,
    compile_path,
    compiled_response,
    error_words,
    flatten,
    transform_response,
)

__all__ = [
    "CompiledResponse",
    "cap_result",
    "compile_path",
    "compiled_response",
    "error_words",
    "flatten",
    "json_size",
    "to_jsonable",
    "transform_response",
]
