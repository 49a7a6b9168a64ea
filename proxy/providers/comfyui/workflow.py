"""Workflows: load an API-format graph, check the injection map against it, fill in a request.

A workflow is ComfyUI's "API format": ``{node_id: {"class_type", "inputs", "_meta"}}``. The
injection map says which node input receives which gateway parameter. Both are data: a built-in
workflow is a JSON file in ``workflows/`` with a YAML map next to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import yaml

from proxy.providers.comfyui.settings import ComfyUISettings, Target, targets

Graph = dict[str, dict[str, Any]]

_BUILTIN = files("proxy.providers.comfyui").joinpath("workflows")


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in _BUILTIN.iterdir() if p.name.endswith(".json"))


@dataclass(frozen=True)
class Workflow:
    graph: Graph
    inputs: dict[str, list[Target]]
    quality_steps: dict[str, int]
    source: str

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
    name = settings.workflow
    if name in builtin_names():
        graph = _parse(_BUILTIN.joinpath(f"{name}.json").read_bytes(), f"built-in {name!r}")
        defaults = yaml.safe_load(_BUILTIN.joinpath(f"{name}.yaml").read_text("utf-8")) or {}
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
                hint = f" (built-in workflows: {', '.join(builtin_names())})"
            raise ValueError(f"workflow: cannot read {str(path)!r}: "
                             f"{exc.strerror or exc}{hint}") from None
        graph = _parse(raw, str(path))
        defaults = {}
        source = str(path)

    check_api_format(graph, source)
    inputs: dict[str, list[Target]] = {
        key: [(str(n), str(i)) for n, i in targets(pairs)]
        for key, pairs in (defaults.get("inputs") or {}).items()
    }
    inputs.update(settings.inputs)
    quality_steps = {**(defaults.get("quality_steps") or {}), **settings.quality_steps}
    _check_targets(graph, inputs, source)
    if settings.output_node is not None and settings.output_node not in graph:
        raise ValueError(f"output_node: node {settings.output_node!r} is not in {source}")
    return Workflow(graph, inputs, quality_steps, source)


def _parse(raw: bytes, source: str) -> Graph:
    try:
        graph = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"workflow: {source} is not valid JSON: {exc}") from None
    if not isinstance(graph, dict):
        raise ValueError(f"workflow: {source} must be a JSON object of nodes")
    return graph


def check_api_format(graph: Graph, source: str) -> None:
    if "nodes" in graph and "links" in graph:
        raise ValueError(
            f"workflow: {source} is in ComfyUI's UI format (nodes/links); export it with "
            "'Export (API)' / 'Save (API Format)' instead")
    if not graph:
        raise ValueError(f"workflow: {source} has no nodes")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise ValueError(f"workflow: node {node_id!r} of {source} has no 'class_type': "
                             "the workflow must be in API format")
        if not isinstance(node.get("inputs", {}), dict):
            raise ValueError(f"workflow: node {node_id!r} of {source} has 'inputs' that are "
                             "not an object")


def _check_targets(graph: Graph, inputs: dict[str, list[Target]], source: str) -> None:
    if "prompt" not in inputs:
        raise ValueError(f"inputs: 'prompt' is not mapped to any node input of {source}")
    for parameter, pairs in inputs.items():
        for node_id, input_name in pairs:
            node = graph.get(node_id)
            if node is None:
                raise ValueError(f"inputs.{parameter}: node {node_id!r} is not in {source}")
            if input_name not in (node.get("inputs") or {}):
                raise ValueError(
                    f"inputs.{parameter}: node {node_id!r} ({node['class_type']}) of {source} "
                    f"has no input {input_name!r}")
