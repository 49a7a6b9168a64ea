"""ComfyUI's refusals and failures sorted by who must act: the client's values are 400s naming
the request's parameter; everything about the server or its workflow is the operator's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.providers.comfyui.errors import execution_error, refusal

# The built-in text-to-image map: who fills which node input.
INPUTS = {"prompt": [("6", "text")], "seed": [("3", "seed")], "steps": [("3", "steps")],
          "width": [("5", "width")], "height": [("5", "height")],
          "batch_size": [("5", "batch_size")]}


def body(*errors: tuple[str, str, str, str | None], kind: str = "prompt_outputs_failed_validation"
         ) -> bytes:
    """A ``POST /prompt`` 400: (node id, class, error type, input name) per problem."""
    nodes: dict[str, Any] = {}
    for node_id, class_type, error, name in errors:
        entry = nodes.setdefault(node_id, {"errors": [], "dependent_outputs": ["9"],
                                           "class_type": class_type})
        entry["errors"].append({"type": error, "message": f"{error} message",
                                "details": name or "", "extra_info": {"input_name": name}})
    return json.dumps({"error": {"type": kind, "message": "Prompt outputs failed validation",
                                 "details": ""}, "node_errors": nodes}).encode()


@pytest.mark.parametrize(("problem", "param"), [
    (("5", "EmptyLatentImage", "value_bigger_than_max", "width"), "size"),
    (("5", "EmptyLatentImage", "value_smaller_than_min", "height"), "size"),
    (("5", "EmptyLatentImage", "value_bigger_than_max", "batch_size"), "n"),
    (("3", "KSampler", "invalid_input_type", "seed"), "seed"),
])
def test_a_value_the_client_chose_is_its_400(problem, param) -> None:
    error = refusal(body(problem), INPUTS, "gpu-1:8188", "comfy/sdxl")
    assert (error.status, error.type, error.param, error.code) == (
        400, "invalid_request_error", param, "invalid_value")
    assert f"node {problem[0]} ({problem[1]})" in error.message
    assert not error.transient


@pytest.mark.parametrize(("problems", "advice"), [
    # The operator's quality_steps, not the client's value.
    ([("3", "KSampler", "value_bigger_than_max", "steps")], "Check the workflow"),
    ([("4", "CheckpointLoaderSimple", "value_not_in_list", "ckpt_name")],
     "A model file the workflow names is not installed"),
    ([("11", "DualCLIPLoader", "value_not_in_list", "clip_name2")],
     "A model file the workflow names is not installed"),
    ([("3", "KSampler", "value_not_in_list", "sampler_name")], "Check the workflow"),
    # One of the client's values among the operator's problems: still the operator's to fix.
    ([("5", "EmptyLatentImage", "value_bigger_than_max", "width"),
      ("4", "CheckpointLoaderSimple", "value_not_in_list", "ckpt_name")],
     "A model file the workflow names is not installed"),
    ([("10", "LoadImage", "custom_validation_failed", "image")], "Check the workflow"),
])
def test_what_the_server_or_workflow_lacks_is_the_operators(problems, advice) -> None:
    error = refusal(body(*problems), INPUTS, "gpu-1:8188", "comfy/sdxl")
    assert (error.status, error.type, error.code) == (502, "upstream_error",
                                                      "upstream_misconfigured")
    assert error.transient, "refused before any work: retries and fallbacks may act"
    assert error.message.startswith("The ComfyUI server at gpu-1:8188 cannot run model "
                                    "'comfy/sdxl''s workflow: prompt_outputs_failed_validation")
    assert advice in error.message


def test_a_missing_custom_node_says_to_install_it() -> None:
    raw = json.dumps({"error": {"type": "missing_node_type", "message": "Node 'X' not found.",
                                "details": "Node ID '#7'"}, "node_errors": {}}).encode()
    error = refusal(raw, INPUTS, "gpu-1:8188", "m")
    assert error.status == 502 and "Node 'X' not found. (Node ID '#7')" in error.message
    assert "Install the custom node that provides it on that server" in error.message


def test_an_unreadable_refusal_is_the_operators_with_its_text() -> None:
    error = refusal(b"<html>proxy error</html>", INPUTS, "gpu-1:8188", "m")
    assert error.status == 502 and "<html>proxy error</html>" in error.message


def test_out_of_memory_is_a_transient_503_and_other_failures_a_502() -> None:
    data = {"node_id": "3", "node_type": "KSampler", "exception_type": "torch.OutOfMemoryError",
            "exception_message": "CUDA out of memory. Tried to allocate 20.00 GiB"}
    oom = execution_error(data, "gpu-1:8188")
    assert (oom.status, oom.code, oom.transient) == (503, "upstream_out_of_memory", True)
    assert "gpu-1:8188 ran out of GPU memory in node 3 (KSampler)" in oom.message
    # Older torch builds raise a RuntimeError saying so.
    assert execution_error({**data, "exception_type": "RuntimeError",
                            "exception_message": "Allocation on device 0 would exceed"},
                           "h").code == "upstream_out_of_memory"
    other = execution_error({**data, "exception_type": "ValueError", "exception_message": "no"},
                            "gpu-1:8188")
    assert (other.status, other.code, other.transient) == (502, "upstream_execution_error",
                                                           False)
