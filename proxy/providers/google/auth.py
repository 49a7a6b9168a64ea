"""OAuth access tokens for Vertex AI, shared by the ``gemini`` and ``imagen`` providers.

Three sources, in this order of preference:

- ``access_token``: a token the operator minted (``gcloud auth print-access-token``, an env var).
  Used as it is; it is never refreshed.
- ``credentials_file``: a service-account key or authorized-user credentials (JSON).
- neither: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's
  login, the metadata server on Google Cloud); other credential types go this way.

google-auth refreshes with blocking HTTP (``requests``), so a refresh runs in a worker thread,
one at a time (a lock; callers that queued behind it reuse its token), and starts while the token
still has ``REFRESH_MARGIN`` seconds to live, so a request never leaves with a token that expires
on the way. Tokens never reach a log or an error message.

One source serves every model of a gateway that names the same credentials: a gateway with five
Vertex models still fetches one token an hour, not five.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from proxy.core.errors import upstream_error
from proxy.core.redact import remember

if TYPE_CHECKING:
    import google.auth.credentials
    import requests

log = logging.getLogger("proxy.providers.google")

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# Refresh when fewer than this many seconds remain (google-auth's own threshold is 3m45s).
REFRESH_MARGIN = 300.0


class StaticToken:
    """An operator-supplied access token, used as it is."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._token}"}


class GoogleCredentials:
    """A google-auth credential (from a file, or ADC) with a token kept fresh."""

    def __init__(self, credentials_file: Path | None, *,
                 refresh_margin: float = REFRESH_MARGIN) -> None:
        self._file = credentials_file
        self._margin = refresh_margin
        self._credentials: google.auth.credentials.Credentials | None = None
        self._session: requests.Session | None = None
        self._lock: anyio.Lock | None = None
        self._thread_lock = threading.Lock()  # belt and braces: refresh() is not thread-safe

    def __repr__(self) -> str:  # never the token
        source = str(self._file) if self._file else "application default credentials"
        return f"GoogleCredentials({source})"

    async def headers(self) -> dict[str, str]:
        """The ``authorization`` header (and the quota project, for user credentials)."""
        if not self._fresh():
            if self._lock is None:  # made here, inside the running event loop
                self._lock = anyio.Lock()
            async with self._lock:
                if not self._fresh():  # whoever held the lock may have refreshed already
                    await anyio.to_thread.run_sync(self._refresh)
        credentials = self._credentials
        assert credentials is not None and credentials.token
        headers = {"authorization": f"Bearer {credentials.token}"}
        quota_project = getattr(credentials, "quota_project_id", None)
        if quota_project:
            headers["x-goog-user-project"] = quota_project
        return headers

    def _fresh(self) -> bool:
        credentials = self._credentials
        if credentials is None or not credentials.token:
            return False
        expiry = credentials.expiry
        if expiry is None:
            return True
        if expiry.tzinfo is None:  # google-auth keeps naive UTC
            expiry = expiry.replace(tzinfo=datetime.UTC)
        remaining = expiry - datetime.datetime.now(datetime.UTC)
        return remaining.total_seconds() > self._margin

    def _refresh(self) -> None:
        """Blocking: load the credentials if needed, then fetch a new token."""
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
        import requests

        with self._thread_lock:
            try:
                if self._session is None:
                    self._session = requests.Session()
                    # Like the upstream client: no proxy or netrc settings from the environment.
                    self._session.trust_env = False
                if self._credentials is None:
                    self._credentials = _load(self._file)
                request = google.auth.transport.requests.Request(self._session)
                self._credentials.refresh(request)
                remember(self._credentials.token)  # redacted wherever it is repeated
            except google.auth.exceptions.GoogleAuthError as exc:
                # Google's reason goes to the client; which credentials (a file on the
                # gateway's host) only to the log.
                log.warning("Google access token (%s) refused: %s", _source(self._file),
                            _describe(exc))
                raise upstream_error(f"Could not get a Google access token: {_describe(exc)}",
                                     code="upstream_auth_failed") from None
            except requests.RequestException as exc:
                log.warning("Google's token endpoint (%s) unreachable: %s: %s",
                            _source(self._file), type(exc).__name__, exc)
                raise upstream_error("Could not reach Google's token endpoint.",
                                     code="upstream_auth_failed") from None
            if not self._credentials.token:
                raise upstream_error("Google's token endpoint answered without a token.",
                                     code="upstream_auth_failed")

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


TokenSource = StaticToken | GoogleCredentials

# Per gateway (keyed by its shared HTTP client), per credentials: one token source.
_SHARED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], GoogleCredentials]] = (
    weakref.WeakKeyDictionary())


def token_source(owner: Any, *, access_token: str | None, credentials_file: str | None,
                 config_dir: Path) -> TokenSource:
    """The token source for these settings, shared with other models of the same ``owner``."""
    if access_token:
        return StaticToken(access_token)
    path = resolve_path(credentials_file, config_dir) if credentials_file else None
    key = ("file", str(path)) if path else ("adc", "")
    sources = _SHARED.setdefault(owner, {})
    if key not in sources:
        sources[key] = GoogleCredentials(path)
    return sources[key]


def resolve_path(credentials_file: str, config_dir: Path) -> Path:
    path = Path(credentials_file).expanduser()
    return path if path.is_absolute() else config_dir / path


def check_credentials_file(credentials_file: str, config_dir: Path) -> None:
    """Start-up check: the file exists and google-auth can load it (no network)."""
    _load_file(resolve_path(credentials_file, config_dir))


def _load_file(path: Path) -> google.auth.credentials.Credentials:
    """The credentials in ``path``: a service-account key or authorized-user credentials.

    Loaded by type, not with google-auth's generic loader: other types (workload identity
    federation and the like) can run programs or fetch URLs named in the file, so they are
    only accepted through application default credentials, where the operator opted in.
    Problems are ``ValueError("credentials_file: ...")``, as config checks report them.
    """
    import google.auth.exceptions
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"credentials_file: cannot read {path}: {exc.strerror}") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"credentials_file: {path} is not JSON ({exc.msg}, line {exc.lineno})"
                         ) from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            return service_account.Credentials.from_service_account_info(
                info, scopes=[CLOUD_PLATFORM])
        if kind == "authorized_user":
            return user_credentials.Credentials.from_authorized_user_info(
                info, scopes=[CLOUD_PLATFORM])
    except (google.auth.exceptions.GoogleAuthError, ValueError, KeyError) as exc:
        raise ValueError(f"credentials_file: {path} is not a usable {kind} file: "
                         f"{_describe(exc)}") from None
    raise ValueError(f"credentials_file: {path} has type {kind!r}; use a service-account key "
                     "or authorized-user credentials, or point GOOGLE_APPLICATION_CREDENTIALS "
                     "at it and leave credentials_file out (application default credentials)")


def _load(path: Path | None) -> google.auth.credentials.Credentials:
    import google.auth
    import google.auth.exceptions

    if path is not None:
        try:
            return _load_file(path)
        except ValueError as exc:  # the file changed since start-up
            raise google.auth.exceptions.DefaultCredentialsError(
                str(exc).removeprefix("credentials_file: ")) from None
    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    return credentials


def _source(path: Path | None) -> str:
    return f"credentials_file {path}" if path else "application default credentials"


def _describe(exc: BaseException) -> str:
    # google-auth puts the token endpoint's error body in args[1]; args[0] says enough.
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text[:300]
