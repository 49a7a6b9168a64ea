"""Provider settings checked when the configuration loads: credentials and settings that the
chosen backend (Azure, Gemini API or Vertex AI) refuses."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError
from proxy.service.gateway import load_checked_text


@pytest.mark.parametrize(("auth", "problem"), [
    ("api_key: k, entra_token: t", "providers.azure.entra_token: give either api_key or"),
    ("api_version: v1", "providers.azure.api_key: required (or entra_token"),
])
def test_azure_takes_exactly_one_credential(auth, problem) -> None:
    with pytest.raises(ConfigError) as caught:
        load_checked_text(f"providers:\n  azure: {{endpoint: 'https://r.openai.azure.com', "
                         f"{auth}}}\n")
    assert problem in str(caught.value)


@pytest.mark.parametrize(("settings", "complaint"), [
    ("credentials_file: /nonexistent/sa.json", "credentials_file: cannot read"),
    ("credentials_file: {bad}", "is not JSON"),
    ("credentials_file: {partial}", "credentials_file"),
    ("api_key: k\n    project: p", "not both"),
    ("base_url: http://x", "set api_key"),
    ("api_key: k\n    location: us-central1", "location is a Vertex AI setting"),
])
def test_gemini_settings_are_checked_at_start(tmp_path, settings, complaint) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    partial = tmp_path / "partial.json"
    partial.write_text('{"type": "service_account", "client_email": "x"}')
    settings = settings.format(bad=bad, partial=partial)
    if "api_key" not in settings and "base_url" not in settings:
        settings = f"project: p\n    {settings}"
    with pytest.raises(ConfigError) as caught:
        load_checked_text(f"providers:\n  gemini:\n    {settings}\n")
    assert complaint in str(caught.value)


@pytest.mark.parametrize(("settings", "complaint"), [
    ("api_key: k\n    enhance_prompt: true", "enhance_prompt is a Vertex AI setting"),
    ("api_key: k\n    person_generation: allow_all", "refused by the Gemini API"),
    ("project: p\n    safety_setting: block_everything", "safety_setting"),
])
def test_imagen_settings_are_checked(settings, complaint) -> None:
    with pytest.raises(ConfigError) as caught:
        load_checked_text(f"providers:\n  imagen:\n    {settings}\n")
    assert complaint in str(caught.value)
