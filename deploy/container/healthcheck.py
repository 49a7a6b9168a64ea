"""The container's HEALTHCHECK: exit 0 when the gateway's ``/readyz`` answers 200, else 1.

``/readyz`` is 503 while the gateway drains after SIGTERM and while its Redis does not answer, so
an orchestrator stops sending it traffic then. Standard library only (the image has no curl).
The URL is ``$IMAGE_PROXY_HEALTHCHECK_URL``, by default ``http://127.0.0.1:8080/readyz``: set it
when the configuration serves another port.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("IMAGE_PROXY_HEALTHCHECK_URL", "http://127.0.0.1:8080/readyz")


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=4) as response:
            status = response.status
            body = response.read(500)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(500)
    except OSError as exc:
        print(f"{URL}: {exc}", file=sys.stderr)
        return 1
    print(f"{URL}: {status} {body.decode(errors='replace')}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
