"""The ``providers:`` block that points every built-in provider at its fake (by the fakes' base
URLs: ``openai``, ``azure``, ``google``, ``xai``), with the credentials each fake expects."""

from __future__ import annotations

from collections.abc import Mapping

from tests.support.fakes import azure, google, openai_upstream, xai


def providers_yaml(url: Mapping[str, str]) -> str:
    """YAML lines (a ``providers:`` block) ending with a newline."""
    return f"""providers:
  openai: {{api_key: {openai_upstream.API_KEY}, base_url: "{url["openai"]}/v1"}}
  azure: {{endpoint: "{url["azure"]}", api_key: {azure.API_KEY}}}
  gemini: {{api_key: {google.API_KEY}, base_url: "{url["google"]}"}}
  imagen: {{api_key: {google.API_KEY}, base_url: "{url["google"]}"}}
  xai: {{api_key: {xai.API_KEY}, base_url: "{url["xai"]}/v1"}}
"""
