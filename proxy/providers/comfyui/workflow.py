"""Workflows: load an API-format graph, check the injection map against it, fill in a request.

A workflow is ComfyUI's "API format": ``{node_id: {"class_type", "inputs", "_meta"}}``. The
injection map says which node input receives which gateway parameter. Both are data: a built-in
workflow is a JSON file in ``workflows/`` with a YAML map next to it. A model has a workflow for
generations (``workflow``) and may have one for edits (``edit_workflow``), which must also map
``image``, the ``LoadImage`` input that receives the uploaded picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import yaml

from proxy.providers.comfyui.settings import ComfyUISettings, Target, targets

Graph = dict[str, dict[str, Any]]

_BUILTIN = files("proxy.providers.comfyui").joinpath("workflows")

# The sampler's denoise for an edit when neither the model nor a built-in workflow sets one.
DEFAULT_DENOISE = 0.75


def builtin_names(edit: bool | None = None) -> list[str]:
    """The built-in workflows; with ``edit``, only the edit (or only the generation) ones."""
    names = sorted(p.name[:-5] for p in _BUILTIN.iterdir() if p.name.endswith(".json"))
    if edit is None:
        return names
    return [name for name in names if ("image" in _defaults(name).get("inputs", {})) == edit]


def _defaults(name: str) -> dict[str, Any]:
    """A built-in workflow's YAML: its injection map, quality steps, edit denoise."""
    loaded = yaml.safe_load(_BUILTIN.joinpath(f"{name}.yaml").read_text("utf-8"))
    return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True)
class Workflow:
    graph: Graph
    inputs: dict[str, list[Target]]
    quality_steps: dict[str, int]
    source: str
    # Edit workflows that map ``denoise``: the value injected (``edit_denoise`` or the default).
    denoise: float | None = None

    def class_type(self, node_id: str) -> str:
        node = self.graph.get(node_id)
        return str(node["class_type"]) if node else "unknown"

    def maps(self, parameter: str) -> bool:
        return parameter in self.inputs

    def build(self, values: Mapping[str, Any]) -> Graph:
        """A copy of the graph with ``values`` (gateway parameter -> value) injected.

        Only the nodes that change are copied; the loaded graph itself is never modified.
        """
        graph = dict(self.graph)
        copied: set[str] = set()
        for parameter, value in values.items():
            for node_id, input_name in self.inputs.get(parameter, ()):
                if node_id not in copied:
                    node = dict(graph[node_id])
                    node["inputs"] = dict(node.get("inputs") or {})
                    graph[node_id] = node
                    copied.add(node_id)
                graph[node_id]["inputs"][input_name] = value
        return graph


def load_workflow(settings: ComfyUISettings, config_dir: Path) -> Workflow:
    """Load and check the configured workflow; a ``ValueError`` names the faulty setting."""
    workflow = _load(settings.workflow, settings.inputs, settings.quality_steps, config_dir,
                     setting="workflow", inputs_setting="inputs", required=("prompt",))
    _check_output_node(settings, workflow)
    return workflow


def load_edit_workflow(settings: ComfyUISettings, config_dir: Path) -> Workflow | None:
    """The workflow for edits, checked like :func:`load_workflow`; None when there is none."""
    if settings.edit_workflow is None:
        for name in ("edit_inputs", "edit_denoise"):
            if getattr(settings, name):
                raise ValueError(f"{name}: set edit_workflow too; without it the model "
                                 "refuses edits")
        return None
    workflow = _load(settings.edit_workflow, settings.edit_inputs, settings.quality_steps,
                     config_dir, setting="edit_workflow", inputs_setting="edit_inputs",
                     required=("prompt", "image"))
    _check_output_node(settings, workflow)
    shared = set(workflow.inputs["image"]) & set(workflow.inputs.get("mask", ()))
    if shared:
        node_id, input_name = sorted(shared)[0]
        raise ValueError(f"edit_inputs.mask: [{node_id!r}, {input_name!r}] also receives "
                         "'image'; load the mask with its own node (LoadImageMask, channel "
                         "alpha)")
    if settings.edit_denoise is not None and not workflow.maps("denoise"):
        raise ValueError(f"edit_denoise: {workflow.source} maps no 'denoise' input "
                         "(add it to edit_inputs, e.g. [\"3\", denoise])")
    denoise = None
    if workflow.maps("denoise"):
        denoise = settings.edit_denoise or workflow.denoise or DEFAULT_DENOISE
    return replace(workflow, denoise=denoise)


def _load(name: str, overrides: dict[str, list[Target]], quality_steps: dict[str, int],
          config_dir: Path, *, setting: str, inputs_setting: str,
          required: tuple[str, ...]) -> Workflow:
    editing = "image" in required
    if name in builtin_names():
        if name not in builtin_names(edit=editing):
            kind, other = ("a generation", "workflow") if editing else ("an edit",
                                                                        "edit_workflow")
            raise ValueError(f"{setting}: built-in {name!r} is {kind} workflow, for "
                             f"{other}; built-in workflows for {setting}: "
                             f"{', '.join(builtin_names(edit=editing))}")
        graph = _parse(_BUILTIN.joinpath(f"{name}.json").read_bytes(), f"built-in {name!r}",
                       setting)
        defaults = _defaults(name)
        source = f"built-in workflow {name!r}"
    else:
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = config_dir / path
        try:
            raw = path.read_bytes()
        except OSError as exc:
            hint = ""
            if "/" not in name and not name.endswith(".json"):
                hint = (f" (built-in {'edit ' if editing else ''}workflows: "
                        f"{', '.join(builtin_names(edit=editing))})")
            raise ValueError(f"{setting}: cannot read {str(path)!r}: "
                             f"{exc.strerror or exc}{hint}") from None
        graph = _parse(raw, str(path), setting)
        defaults = {}
        source = str(path)

    check_api_format(graph, source, setting)
    inputs: dict[str, list[Target]] = {
        key: [(str(n), str(i)) for n, i in targets(pairs)]
        for key, pairs in (defaults.get("inputs") or {}).items()
    }
    inputs.update(overrides)
    steps = {**(defaults.get("quality_steps") or {}), **quality_steps}
    _check_targets(graph, inputs, source, inputs_setting, required)
    denoise = defaults.get("edit_denoise")
    return Workflow(graph, inputs, steps, source,
                    float(denoise) if denoise is not None else None)


def _check_output_node(settings: ComfyUISettings, workflow: Workflow) -> None:
    if settings.output_node is not None and settings.output_node not in workflow.graph:
        raise ValueError(f"output_node: node {settings.output_node!r} is not in "
                         f"{workflow.source}")


def _parse(raw: bytes, source: str, setting: str = "workflow") -> Graph:
    try:
        graph = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{setting}: {source} is not valid JSON: {exc}") from None
    if not isinstance(graph, dict):
        raise ValueError(f"{setting}: {source} must be a JSON object of nodes")
    return graph


def check_api_format(graph: Graph, source: str, setting: str = "workflow") -> None:
    if "nodes" in graph and "links" in graph:
        raise ValueError(
            f"{setting}: {source} is in ComfyUI's UI format (nodes/links); export it with "
            "'Export (API)' / 'Save (API Format)' instead")
    if not graph:
        raise ValueError(f"{setting}: {source} has no nodes")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise ValueError(f"{setting}: node {node_id!r} of {source} has no 'class_type': "
                             "the workflow must be in API format")
        if not isinstance(node.get("inputs", {}), dict):
            raise ValueError(f"{setting}: node {node_id!r} of {source} has 'inputs' that are "
                             "not an object")


def _check_targets(graph: Graph, inputs: dict[str, list[Target]], source: str,
                   setting: str = "inputs", required: tuple[str, ...] = ("prompt",)) -> None:
    for parameter in required:
        if parameter not in inputs:
            raise ValueError(f"{setting}: {parameter!r} is not mapped to any node input of "
                             f"{source}")
    for parameter, pairs in inputs.items():
        for node_id, input_name in pairs:
            node = graph.get(node_id)
            if node is None:
                raise ValueError(f"{setting}.{parameter}: node {node_id!r} is not in {source}")
            if input_name not in (node.get("inputs") or {}):
                raise ValueError(
                    f"{setting}.{parameter}: node {node_id!r} ({node['class_type']}) of "
                    f"{source} has no input {input_name!r}")
