"""Where things are, for tests that read files of the repository."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COMFYUI_WORKFLOWS = REPO_ROOT / "proxy" / "providers" / "comfyui" / "workflows"
