"""Provider ``comfyui`` without a server: workflow settings, edit settings, protocol pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.config import ConfigError
from proxy.providers.base import ProviderContext
from proxy.providers.comfyui import ComfyUIProvider, ComfyUISettings
from proxy.providers.comfyui.errors import validation_summary
from proxy.providers.comfyui.protocol import ProgressTracker, parse_binary
from proxy.service.gateway import load_checked_text
from proxy.upstream.client import UpstreamClient
from tests.support.fakes.comfyui import comfy_yaml, jpeg
from tests.support.paths import COMFYUI_WORKFLOWS

# -- settings and workflow validation ---------------------------------------------------------


def provider(tmp_path: Path, **settings) -> ComfyUIProvider:
    return ComfyUIProvider(
        None,  # type: ignore[arg-type]  # the model entry is not needed to build one
        ComfyUISettings(base_url="http://127.0.0.1:8188", **settings),
        ProviderContext(UpstreamClient(), tmp_path),
    )


def test_builtin_workflow_map_and_overrides(tmp_path) -> None:
    workflow = provider(tmp_path, inputs={"prompt": [[6, "text"], ["7", "text"]]}).workflow
    assert workflow.inputs["prompt"] == [("6", "text"), ("7", "text")]
    assert workflow.inputs["seed"] == [("3", "seed")], "the built-in map fills the rest"
    assert workflow.quality_steps == {"low": 12, "medium": 25, "high": 40}


def test_relative_workflow_paths_are_relative_to_the_config(tmp_path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "mine.json").write_text(json.dumps({
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}}}))
    workflow = provider(tmp_path, workflow="flows/mine.json", inputs={"prompt": ["1", "text"]})
    assert workflow.workflow.graph["1"]["class_type"] == "CLIPTextEncode"


@pytest.mark.parametrize(("settings", "graph", "setting", "message"), [
    ({"workflow": "no_such_flow"}, None, "workflow", "built-in workflows: sdxl_text_to_image"),
    ({}, {"nodes": [], "links": []}, "workflow", "UI format"),
    ({}, {"1": {"inputs": {}}}, "workflow", "node '1' of"),
    ({"inputs": {"seed": ["1", "seed"]}}, {"1": {"class_type": "KSampler", "inputs": {"seed": 0}}},
     "inputs", "'prompt' is not mapped"),
    ({"inputs": {"prompt": ["9", "text"]}}, {"1": {"class_type": "X", "inputs": {}}},
     "inputs.prompt", "node '9' is not in"),
    ({"inputs": {"prompt": ["1", "txt"]}}, {"1": {"class_type": "X", "inputs": {"text": ""}}},
     "inputs.prompt", "has no input 'txt'"),
    ({"inputs": {"prompt": ["1", "text"]}, "output_node": 5},
     {"1": {"class_type": "X", "inputs": {"text": ""}}}, "output_node", "node '5' is not in"),
])
def test_bad_workflow_settings_are_named(tmp_path, settings, graph, setting, message) -> None:
    if graph is not None:
        (tmp_path / "flow.json").write_text(json.dumps(graph))
        settings = {"workflow": "flow.json", **settings}
    with pytest.raises(ValueError, match=f"^{setting}: ") as caught:
        provider(tmp_path, **settings)
    assert message in str(caught.value)


def test_unknown_injection_parameter_is_a_config_error() -> None:
    text = comfy_yaml("http://127.0.0.1:1", extra="""    inputs: {cfg: ["3", cfg]}""")
    with pytest.raises(ConfigError, match=r"models\[0\]\.inputs: .*unknown parameter\(s\) cfg"):
        load_checked_text(text)


# -- protocol pieces --------------------------------------------------------------------------


def test_progress_weights_samplers_and_never_goes_back() -> None:
    tracker = ProgressTracker({"4": "CheckpointLoaderSimple", "3": "KSampler", "8": "VAEDecode"})
    assert tracker.cached(["4"]) == pytest.approx(100 / 13)
    tracker.executing("3")
    assert tracker.progress("3", 5, 10) == pytest.approx(100 * 6 / 13)
    assert tracker.progress("3", 1, 10) == pytest.approx(100 * 6 / 13), "never decreases"
    assert tracker.executing("8") == pytest.approx(100 * 11 / 13)
    assert tracker.executed("8") == 100


def test_binary_preview_frames() -> None:
    image = jpeg(8, 8, (1, 2, 3))
    assert parse_binary(b"\x00\x00\x00\x01\x00\x00\x00\x01" + image).data == image
    meta = json.dumps({"prompt_id": "p", "image_type": "image/png"}).encode()
    frame = b"\x00\x00\x00\x04" + len(meta).to_bytes(4, "big") + meta + b"PNGDATA"
    preview = parse_binary(frame)
    assert (preview.mime, preview.prompt_id, preview.data) == ("image/png", "p", b"PNGDATA")
    assert parse_binary(b"\x00\x00\x00\x03\x00\x00\x00\x01" + b"3text") is None


def test_validation_summary_reads_both_shapes() -> None:
    assert validation_summary(json.dumps({"error": {
        "type": "missing_node_type", "message": "Node 'X' not found.",
        "details": "Node ID '#7'"}, "node_errors": {}}).encode()) == (
        "missing_node_type: Node 'X' not found. (Node ID '#7')")
    summary = validation_summary(json.dumps({
        "error": {"type": "prompt_outputs_failed_validation",
                  "message": "Prompt outputs failed validation", "details": ""},
        "node_errors": {"3": {"class_type": "KSampler", "errors": [
            {"type": "value_not_in_list", "message": "Value not in list",
             "details": "sampler_name: 'x'"}]}}}).encode())
    assert summary.endswith("node 3 (KSampler): Value not in list: sampler_name: 'x'")


# -- edit settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "message"), [
    ("    edit_workflow: sdxl_image_to_image\n    edit_inputs: {image: ['99', image]}",
     r"models\[0\]\.edit_inputs\.image: node '99' is not in built-in workflow"),
    ("    edit_workflow: custom.json\n    edit_inputs: {prompt: ['6', text]}",
     r"models\[0\]\.edit_inputs: 'image' is not mapped"),
    ("    edit_workflow: sdxl_image_to_image\n    edit_inputs: {mask: ['10', mask]}",
     r"models\[0\]\.edit_inputs\.mask: node '10' \(LoadImage\) .* has no input 'mask'"),
    ("    edit_workflow: sdxl_inpaint\n    edit_inputs: {mask: ['10', image]}",
     r"models\[0\]\.edit_inputs\.mask: \['10', 'image'\] also receives 'image'"),
    ("    edit_workflow: sdxl_text_to_image", r"edit_workflow: built-in 'sdxl_text_to_image' "
                                              r"is a generation workflow"),
    ("    edit_workflow: no_such_flow", r"built-in edit workflows: sdxl_image_to_image, "
                                        r"sdxl_inpaint"),
    ("    edit_denoise: 0.5", r"models\[0\]\.edit_denoise: set edit_workflow too"),
    ("    edit_workflow: custom.json\n    edit_denoise: 0.5\n"
     "    edit_inputs: {prompt: ['6', text], image: ['10', image]}",
     r"models\[0\]\.edit_denoise: .* maps no 'denoise' input"),
    ("    edit_workflow: sdxl_image_to_image\n    edit_denoise: 1.5", r"edit_denoise"),
    ("    inputs: {image: ['10', image]}", r"image, mask and denoise belong in edit_inputs"),
])
def test_bad_edit_settings_are_named_at_start_up(tmp_path, extra, message) -> None:
    graph = json.loads((COMFYUI_WORKFLOWS / "sdxl_image_to_image.json").read_text())
    (tmp_path / "custom.json").write_text(json.dumps(graph))
    text = comfy_yaml("http://127.0.0.1:1", extra=extra)
    with pytest.raises(ConfigError, match=message):
        load_checked_text(text, base_dir=tmp_path)


def test_a_generation_workflow_cannot_be_a_builtin_edit_workflow() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.workflow: built-in 'sdxl_inpaint' is "
                                          r"an edit workflow, for edit_workflow"):
        load_checked_text(comfy_yaml("http://127.0.0.1:1", workflow="sdxl_inpaint"))
