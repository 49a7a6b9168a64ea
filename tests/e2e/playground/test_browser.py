"""The web playground at ``/``: the page itself in headless Chromium against a real gateway (one
key, the local renderer slowed down so progress is visible). Its routes and vendored assets are
checked without a server in ``tests/unit/playground/``."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from proxy.auth import new_key
from tests.support.browser import artifact, chromium
from tests.support.gateways import start_gateway
from tests.support.servers import RunningServer

KEY, KEY_HASH = new_key()
CONFIG = f"""
keys:
  - {{name: playground, key_sha256: {KEY_HASH}}}
models:
  - {{name: local, provider: local, step_delay: 0.1}}
"""
# Every change of the progress bar, seen from inside the page.
WATCH_PROGRESS = """
window.__percents = [];
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("progress");
  if (!bar) return;  // another page (the API reference)
  new MutationObserver(() => window.__percents.push(Number(bar.getAttribute("aria-valuenow"))))
    .observe(bar, {attributes: true, attributeFilter: ["aria-valuenow"]});
});
"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with start_gateway(CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    page.add_init_script(WATCH_PROGRESS)
    yield page
    context.close()
    assert not errors, errors


def png_bytes(size: int = 256, *, mask: bool = False) -> bytes:
    """An opaque blue square, or a mask for it: transparent (to be repainted) in its top half."""
    image = Image.new("RGBA", (size, size), (40, 90, 160, 255))
    if mask:
        image.paste((0, 0, 0, 0), (0, 0, size, size // 2))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# ---- the page in Chromium --------------------------------------------------------------------

def test_generate_streams_partials_progress_and_the_final_image(server, page) -> None:
    page.goto(f"{server.url}/")
    page.fill("#key", KEY)
    page.wait_for_selector('#model option[value="local"]', state="attached")
    page.select_option("#model", "local")
    # Only the parameters the model accepts are offered: local takes seed and quality, not style.
    assert page.locator('[data-param="seed"] input[type=number]').count() == 1
    assert page.locator('[data-param="quality"] select').count() == 1
    assert page.locator('[data-param="style"]').count() == 0
    page.fill("#prompt", "a red apple on a table at sunset")
    page.fill('[data-param="size"] input', "512x512")
    page.select_option('[data-param="quality"] select', "medium")
    page.check("#stream")
    page.fill("#partial-images", "2")
    page.click("#submit")

    page.wait_for_function("() => document.querySelector('#images img')?.naturalWidth > 0")
    page.wait_for_function("() => document.getElementById('progress').dataset.status "
                           "=== 'succeeded'")
    bar = page.locator("#progress")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert int(bar.get_attribute("data-seq")) > 1  # driven by Socket.IO progress events
    percents = page.evaluate("window.__percents")
    assert any(0 < p < 100 for p in percents), percents  # it moved, not just jumped to 100
    assert int(page.get_attribute("#partial", "data-drawn")) >= 1
    assert page.evaluate("document.querySelector('#images img').naturalWidth") == 512
    download = page.locator("#images a[download]")
    assert download.get_attribute("download").endswith(".png")
    assert download.get_attribute("href").startswith("blob:")
    assert page.locator("#error").is_hidden()
    assert page.locator("#history li").count() == 1
    page.screenshot(path=str(artifact("playground.png")), full_page=True)

    page.reload()  # the key and the history are remembered
    assert page.input_value("#key") == KEY
    assert "a red apple" in page.locator("#history li").first.inner_text()


def test_a_wrong_key_is_explained_in_plain_words(server, page) -> None:
    page.goto(f"{server.url}/")
    # Without a key the page says what is missing; with a wrong one, that it is wrong.
    page.wait_for_function("() => document.getElementById('error').textContent.includes("
                           "\"didn't provide an API key\")")
    page.fill("#key", "ipk_not-a-real-key")
    page.wait_for_function("() => document.getElementById('error').textContent === "
                           "'Incorrect API key provided.'")
    page.fill("#prompt", "a red apple")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('progress').dataset.status === 'failed'")
    assert page.locator("#error").is_visible()
    assert page.inner_text("#error") == "Incorrect API key provided."
    assert "Incorrect API key provided." in page.inner_text("#history li")
    page.screenshot(path=str(artifact("playground-wrong-key.png")))


def test_edit_uploads_an_image_as_multipart(server, page) -> None:
    page.goto(f"{server.url}/")
    page.fill("#key", KEY)
    page.wait_for_selector('#model option[value="local"]', state="attached")
    page.click("#mode-edit")
    page.set_input_files("#image", {"name": "in.png", "mimeType": "image/png",
                                    "buffer": png_bytes()})
    page.set_input_files("#mask", {"name": "mask.png", "mimeType": "image/png",
                                   "buffer": png_bytes(mask=True)})
    page.wait_for_function("() => document.getElementById('image-preview').naturalWidth > 0")
    page.fill("#prompt", "a yellow sun")
    page.uncheck("#stream")
    with page.expect_request("**/v1/images/edits") as request:
        page.click("#submit")
    assert request.value.headers["content-type"].startswith("multipart/form-data")
    page.wait_for_function("() => document.querySelector('#images img')?.naturalWidth > 0")
    assert page.evaluate("document.querySelector('#images img').naturalWidth") == 256
    # The mask went along: local repaints only its transparent top half, the rest is kept.
    top, bottom = page.evaluate("""() => {
      const img = document.querySelector('#images img');
      const ctx = Object.assign(document.createElement('canvas'), {width: 256, height: 256})
        .getContext('2d');
      ctx.drawImage(img, 0, 0);
      const at = (y) => [...ctx.getImageData(128, y, 1, 1).data];
      return [at(40), at(220)];
    }""")
    assert bottom == [40, 90, 160, 255] and top != bottom
    assert page.locator("#error").is_hidden()
    # The result can be edited again: it becomes the image to edit.
    page.click("#images button:text('Edit this image')")
    page.wait_for_function("() => document.getElementById('image-preview').src.startsWith('blob:')"
                           " && document.getElementById('image-preview').naturalWidth === 256")


SSE_CHUNKS = [
    ": keep-alive\r\n\r",          # a comment, its CRLF split across chunks
    "\nevent: one\r\ndata: {\"a\"",
    ":1}\r\n\r\nevent: two\n",     # a JSON value cut mid-line
    "data: x\ndata: y\n\nevent: three\rdata: é\r",
    "\rdata: never ended",         # discarded: the stream closes before its blank line
]


def test_the_sse_reader_handles_crlf_and_chunk_boundaries(server, page) -> None:
    page.goto(f"{server.url}/")
    events = page.evaluate(
        """async (chunks) => {
          const encoder = new TextEncoder();
          const body = new ReadableStream({start(c) {
            for (const s of chunks) {  // split one multi-byte character across chunks as well
              const b = encoder.encode(s), cut = s.includes("é") ? b.indexOf(0xc3) + 1 : b.length;
              c.enqueue(b.slice(0, cut)); if (cut < b.length) c.enqueue(b.slice(cut));
            }
            c.close();
          }});
          const seen = [];
          await window.imageProxyPlayground.readSSE(new Response(body), (e) => { seen.push(e); });
          return seen;
        }""", SSE_CHUNKS)
    assert events == [
        {"type": "one", "data": '{"a":1}'},
        {"type": "two", "data": "x\ny"},
        {"type": "three", "data": "é"},
    ]


def test_the_api_reference_is_one_click_away(server, page) -> None:
    page.goto(f"{server.url}/")
    page.click("#docs-link")
    page.wait_for_url(f"{server.url}/docs")
    page.wait_for_selector(".opblock-summary-path")  # the reference rendered (tests/e2e/docs)
