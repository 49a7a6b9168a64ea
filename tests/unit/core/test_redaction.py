"""No secret in anything a client reads: configured secrets whatever their shape, credential
shapes whatever their source, and plain words left alone."""

from __future__ import annotations

import pytest

from proxy.config import load_config_text
from proxy.core.errors import GatewayError, upstream_error
from proxy.core.redact import REDACTED, Redactor, secrets_in

# Shaped like no known kind of key: only the configuration says it is one.
CONFIGURED = "k7-self-hosted-CREDENTIAL-4242"


def redactor(*secrets: str) -> Redactor:
    redact = Redactor()
    redact.remember(secrets)
    return redact


@pytest.mark.parametrize("text", [
    f"Incorrect API key provided: {CONFIGURED}.",
    f'{{"error": {{"message": "bad key \\"{CONFIGURED}\\""}}}}',
    f"Headers received: {{'x-custom-auth': 'prefix/{CONFIGURED}/suffix'}}",
])
def test_a_configured_secret_is_redacted_whatever_its_shape(text: str) -> None:
    redact = redactor(CONFIGURED)
    assert CONFIGURED not in redact(text) and REDACTED in redact(text)
    assert redact(redact(text)) == redact(text), "redacting twice changes nothing"


def test_a_percent_encoded_configured_secret_is_redacted() -> None:
    secret = "pass/word+with=odd&chars"
    redact = redactor(secret)
    assert "pass%2Fword%2Bwith%3Dodd%26chars" not in redact("q=pass%2Fword%2Bwith%3Dodd%26chars")


@pytest.mark.parametrize(("text", "secret"), [
    ("Incorrect API key provided: Bearer abcdefgh12345678", "abcdefgh12345678"),
    ("key sk-proj-AbCdEf0123456789 is wrong", "sk-proj-AbCdEf0123456789"),
    ("key ipk_AbCdEf0123456789xyz unknown", "ipk_AbCdEf0123456789xyz"),
    ("API key not valid: AIzaSyA1234567890abcdefghijklmnopqrstu", "AIzaSyA1234567890abcdefgh"),
    ("bad xai-0123456789abcdefABCDEF", "xai-0123456789abcdefABCDEF"),
    ("token ya29.a0AfH6SMBx-0123456789 expired", "ya29.a0AfH6SMBx-0123456789"),
    ("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl",
     "eyJzdWIiOiIxMjM0NTY3ODkwIn0"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0\n-----END PRIVATE KEY-----",
     "MIIEvQIBADANBgkqhkiG9w0"),
    ("postgresql://ledger:s3cret-pass@db:5432/usage", "s3cret-pass"),
    ("GET /v1/images/files/a.png?expires=1&signature=deadbeef HTTP/1.1", "deadbeef"),
    ("https://acct.blob.core.windows.net/c/x.png?sv=2024&sig=AbC%2Bdef&se=1", "AbC%2Bdef"),
    ("https://b.s3.amazonaws.com/x?X-Amz-Signature=0a1b2c3d&X-Amz-Expires=60", "0a1b2c3d"),
    ("< TEXT '40/image-progress,{\"token\":\"not-shaped-like-a-key\"}' [58 bytes]",
     "not-shaped-like-a-key"),
    ("headers: {'authorization': 'Token opaque', 'api-key': 'opaque2'}", "opaque"),
    ('{\\"token\\": \\"escaped-twice\\"}', "escaped-twice"),
    ("< authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("x-api-key: 0123456789abcdef", "0123456789abcdef"),
])
def test_credential_shapes_are_redacted_without_being_configured(text: str, secret: str) -> None:
    assert secret not in Redactor()(text)


@pytest.mark.parametrize("text", [
    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
    "The upstream rejected the gateway's credentials: Incorrect API key provided: sk-****.",
    "Could not get a Google access token: invalid_grant: Invalid JWT Signature.",
    "Invalid 'extra_headers': 'X-Api-Key' may not be set by the client.",
    "usage: input_tokens=12, output_tokens: 272, total_tokens 284",
    "Key 'alice' has used its budget of $1.00 this month.",
    "signature_version: 4; the token expired",
])
def test_plain_words_are_left_alone(text: str) -> None:
    assert redactor("unused", "x")(text) == text, "short placeholders are not secrets either"


def test_errors_carry_no_secret_even_when_their_message_grows() -> None:
    error = GatewayError(400, "Incorrect API key provided: Bearer abcdefgh12345678",
                         param="sk-proj-AbCdEf0123456789", code="invalid_request_error")
    error.message += " Also: {'authorization': 'Bearer abcdefgh12345678'}"
    text = f"{error.body()} {error} {error!r}"
    assert "abcdefgh12345678" not in text and "sk-proj-AbCdEf0123456789" not in text
    assert upstream_error("The key 'ipk_AbCdEf0123456789xyz' failed").message == \
        f"The key '{REDACTED}' failed"


def test_every_credential_in_a_configuration_is_found(tmp_path) -> None:
    config = load_config_text(f"""
data_dir: {tmp_path}
redis_url: redis://:redis-password-1@127.0.0.1:6379/0
usage: {{database_url: "postgresql://u:pg-password-1@db/usage"}}
storage: {{kind: local, secret: {"s" * 40}}}
providers:
  openai: {{api_key: provider-wide-key-1, headers: {{x-api-key: header-key-1, x-trace: t-1}}}}
models:
  - {{name: local, provider: local}}
  - {{name: m, provider: openai, base_url: "http://u:url-password-1@h/v1", api_key: model-key-1}}
  - {{name: v, provider: gemini, upstream_model: gemini-2.5-flash-image,
      access_token: vertex-token-1, project: p}}
""")
    found = set(secrets_in(config))
    assert {"redis-password-1", "pg-password-1", "s" * 40, "provider-wide-key-1",
            "header-key-1", "url-password-1", "model-key-1", "vertex-token-1"} <= found
    assert not found & {"t-1", "local", "m", "p", "gemini-2.5-flash-image"}


def test_a_secret_learnt_later_is_redacted_from_texts_seen_before() -> None:
    """Short texts are remembered once redacted; learning a secret forgets them."""
    redact = Redactor()
    text = "model m-learnt-later-credential on openai"
    assert redact(text) == text
    assert redact(text) == text  # from the cache
    redact.remember(["learnt-later-credential"])
    assert redact(text) == f"model m-{REDACTED} on openai"
    long = "x" * 300 + " learnt-later-credential"
    assert redact(long) == "x" * 300 + f" {REDACTED}"
