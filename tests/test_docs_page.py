"""``/docs`` with no internet: Swagger UI is served from the service's own vendored files, renders
every operation in a real Chromium whose requests to any other host are refused, and asks for
nothing from outside (government intranets have no CDN)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from services.runtime.settings import Settings
from services.runtime.tools.ports import free_port
from services.tracking.api import create_api
from tests.support.browser import offline_page

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".duban" / "screenshots"


def serving(app) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def test_docs_render_every_operation_from_local_files_with_the_network_cut(tmp_path):
    app = create_api(Settings(jurisdiction="331081"), handlers=lambda: None, engine=lambda: None)
    server, url = serving(app)
    try:
        page_html = httpx.get(f"{url}/docs").text
        assert "cdn" not in page_html and "/static/swagger-ui/swagger-ui-bundle.js" in page_html
        with offline_page() as (page, outside):
            page.goto(f"{url}/docs")
            page.wait_for_selector(".opblock", timeout=20_000)
            operations = page.locator(".opblock").count()
            assert operations == len([r for r in app.openapi()["paths"].values() for _ in r])
            assert "办理件" in page.content()  # the Chinese summaries render (a CJK font is there)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "docs-tracking.png"), full_page=False)
        assert outside == []
    finally:
        server.should_exit = True
