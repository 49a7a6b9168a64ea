"""ComfyUI's failures, sorted by who must act on them.

- The client: a value it sent (its prompt, size, ``n``, seed) that a node of the workflow
  refuses. A 400 naming the request's parameter, as for any other bad value.
- The operator: everything else ComfyUI refuses or fails at — a checkpoint or custom node the
  server lacks, a workflow that does not validate, a server out of GPU memory. A 502 (or a 503
  for memory) whose message says what to fix on which server. These are ``upstream_error``s, so
  circuit breakers count them; a refused prompt and a run out of memory are ``transient`` too,
  so retries (maybe on another server of the pool) and fallback models act on them.

Shapes follow ``shared/reference/providers.md`` §E: ``POST /prompt`` answers 400 with
``{"error": {type, message, details}, "node_errors": {id: {errors: [...], class_type}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.core.errors import GatewayError, invalid_param, upstream_error
from proxy.providers.comfyui.settings import Target

# Workflow inputs the gateway fills from the client's own request -> the request's parameter.
# (``steps`` comes from the operator's ``quality_steps``, ``image``/``mask``/``denoise`` from the
# gateway and its configuration: a node refusing those is the operator's to fix.)
CLIENT_PARAMETERS: dict[str, str] = {
    "prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed",
    "width": "size", "height": "size", "batch_size": "n",
}
# Validation errors about a value (not about the graph's structure).
VALUE_ERRORS = frozenset({"value_smaller_than_min", "value_bigger_than_max",
                          "invalid_input_type", "value_not_in_list"})


@dataclass(frozen=True, slots=True)
class NodeProblem:
    """One entry of ``node_errors``."""

    node_id: str
    class_type: str
    type: str
    message: str
    details: str
    input_name: str | None

    def describe(self) -> str:
        text = f"node {self.node_id} ({self.class_type}): {self.message}"
        return f"{text}: {self.details}" if self.details else text


class PromptRefused(Exception):
    """``POST /prompt`` answered 400: the body, for :func:`refusal` to judge."""

    def __init__(self, raw: bytes) -> None:
        super().__init__("ComfyUI refused the prompt")
        self.raw = raw


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def node_problems(body: Any) -> list[NodeProblem]:
    found: list[NodeProblem] = []
    node_errors = body.get("node_errors") if isinstance(body, dict) else None
    if not isinstance(node_errors, dict):
        return found
    for node_id, entry in node_errors.items():
        if not isinstance(entry, dict):
            continue
        for item in entry.get("errors") or ():
            if not isinstance(item, dict):
                continue
            extra = item.get("extra_info") if isinstance(item.get("extra_info"), dict) else {}
            name = extra.get("input_name")
            found.append(NodeProblem(
                str(node_id), str(entry.get("class_type") or "unknown"),
                str(item.get("type") or "error"), str(item.get("message") or "invalid"),
                str(item.get("details") or ""), name if isinstance(name, str) else None))
    return found


def validation_summary(raw: bytes) -> str:
    """A readable one-liner from a ``POST /prompt`` 400 body (``error`` + ``node_errors``)."""
    body = _parse(raw)
    if body is None:
        return raw[:500].decode("utf-8", "replace") or "no details"
    if not isinstance(body, dict):
        return "no details"
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):
        text = f"{error.get('type') or 'error'}: {error.get('message') or ''}".rstrip(": ")
        if error.get("details"):
            text += f" ({error['details']})"
        parts.append(text)
    elif isinstance(error, str):
        parts.append(error)
    parts += [problem.describe() for problem in node_problems(body)]
    return "; ".join(parts)[:2000] or "no details"


def client_parameter(problem: NodeProblem, inputs: Mapping[str, list[Target]]) -> str | None:
    """The request parameter behind a refused value, when the client chose that value."""
    if problem.type not in VALUE_ERRORS or problem.input_name is None:
        return None
    target = (problem.node_id, problem.input_name)
    for parameter, targets in inputs.items():
        if parameter in CLIENT_PARAMETERS and target in targets:
            return CLIENT_PARAMETERS[parameter]
    return None


def refusal(raw: bytes, inputs: Mapping[str, list[Target]], host: str,
            model: str) -> GatewayError:
    """The error for a ``POST /prompt`` 400: the client's (400) when every problem is a value
    the client chose, else the operator's (502, transient)."""
    body = _parse(raw)
    problems = node_problems(body)
    params = [client_parameter(problem, inputs) for problem in problems]
    if problems and all(params):
        details = "; ".join(problem.describe() for problem in problems)
        return invalid_param(str(params[0]), f"Model '{model}' cannot take this value: its "
                                             f"ComfyUI workflow refuses it ({details}).")
    return upstream_error(
        f"The ComfyUI server at {host} cannot run model '{model}''s workflow: "
        f"{validation_summary(raw)}.{_hint(body, problems)}",
        code="upstream_misconfigured", transient=True)


def _names_model_file(input_name: str | None) -> bool:
    """``ckpt_name``, ``lora_name``, ``clip_name1``, …: a combo of files in a models folder."""
    base = (input_name or "").rstrip("0123456789")
    return base.endswith("_name") and base != "sampler_name"


def _hint(body: Any, problems: list[NodeProblem]) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    if kind == "missing_node_type":
        return (" Install the custom node that provides it on that server, or change the "
                "workflow.")
    if any(problem.type == "value_not_in_list" and _names_model_file(problem.input_name)
           for problem in problems):
        return (" A model file the workflow names is not installed on that server: put it in "
                "the server's models folder, or change the workflow.")
    return " Check the workflow (exported in API format) and its injection map."


def _out_of_memory(data: dict[str, Any]) -> bool:
    kind = str(data.get("exception_type") or "")
    message = str(data.get("exception_message") or "").lower()
    return "OutOfMemory" in kind or "out of memory" in message or \
        "allocation on device" in message


def execution_error(data: dict[str, Any], host: str) -> GatewayError:
    """An ``execution_error`` message (or history entry): out of memory is the server's state
    (503, transient: another try, or another server, may have room); anything else a 502."""
    node = data.get("node_id")
    node_type = data.get("node_type") or "unknown node"
    kind = data.get("exception_type") or "Error"
    message = str(data.get("exception_message") or "").strip() or "no message"
    if _out_of_memory(data):
        return upstream_error(
            f"The ComfyUI server at {host} ran out of GPU memory in node {node} ({node_type}): "
            f"{kind}: {message}. Free memory on that server (fewer models loaded, "
            "--lowvram) or lower the largest sizes and n the model allows.",
            code="upstream_out_of_memory", status=503, transient=True)
    return upstream_error(f"ComfyUI at {host} failed in node {node} ({node_type}): "
                          f"{kind}: {message}", code="upstream_execution_error")


def interrupted_error(data: dict[str, Any], host: str) -> GatewayError:
    node = data.get("node_id")
    where = f" in node {node} ({data.get('node_type')})" if node is not None else ""
    return upstream_error(f"The job was interrupted on the ComfyUI server at {host}{where}.",
                          code="upstream_cancelled")
