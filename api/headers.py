"""Security headers on every response, and the OpenAPI page served without a third-party CDN.

The Content-Security-Policy allows exactly what the dashboard loads: its own scripts, style sheet,
fetch and EventSource calls, all from this origin. `style-src-attr 'unsafe-inline'` is there
because ECharts positions its tooltips with inline style attributes (and the dashboard colours
cluster names with one); no inline script and no eval runs anywhere. Nothing may frame the pages.

`/docs` is FastAPI's Swagger UI page with its assets vendored from the npm package swagger-ui-dist
(api/static/swagger, Apache-2.0). Its one inline script, which starts Swagger UI, is allowed by its
hash, and its style sheet's data: images.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.datastructures import MutableHeaders
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self'; font-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
FIXED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
SWAGGER = "/static/swagger"


def docs_page(openapi_url: str, title: str) -> tuple[HTMLResponse, str]:
    """Swagger UI on the local assets, and the CSP that lets its inline start-up script run."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
    )
    inline = re.findall(r"<script>(.*?)</script>", bytes(page.body).decode(), flags=re.DOTALL)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline
    )
    csp = CSP.replace("script-src 'self'", f"script-src 'self' {hashes}")
    return page, csp.replace("img-src 'self'", "img-src 'self' data:")  # Swagger UI's icons


class SecurityHeaders:
    """Adds FIXED and a Content-Security-Policy (per path, CSP by default) to every HTTP response."""

    def __init__(self, app: ASGIApp, csp_by_path: dict[str, str]) -> None:
        self.app = app
        self.csp_by_path = csp_by_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.csp_by_path.get(scope["path"], CSP)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in {**FIXED, "Content-Security-Policy": csp}.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
