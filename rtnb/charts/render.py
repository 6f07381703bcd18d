"""An altair renderer that draws with no network: ``"rtnb"``, enabled by ``import rtnb.charts``.

altair's default renderer loads Vega from a CDN (jsdelivr), so in an
air-gapped lab or a corporate JupyterHub every chart shows only ``Error
loading script``. This renderer emits ``text/html`` that carries Vega,
Vega-Lite and vega-embed inline -- the bundle vl-convert ships (the same one
``LiveChart`` uses) -- so a chart draws in JupyterLab, in classic Notebook
and in an HTML export (``jupyter nbconvert --to html``) without fetching
anything. Each output carries the bundle (about 0.9 MB) so that it draws on
its own, wherever it is shown; the bundle is evaluated once per page.

``import rtnb.charts`` enables it only while altair's ``"default"`` renderer
is active: a renderer you chose yourself is left alone, and
``alt.renderers.enable("default")`` goes back to the CDN.
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any, Final

import altair as alt

__all__ = ["RENDERER", "enable", "offline_html"]

#: The altair renderer name rtnb registers: ``"rtnb"``.
RENDERER: Final = "rtnb"


@functools.cache
def _bundle() -> str:
    """vega + vega-lite + vega-embed as one classic script (from vl-convert, no network)."""
    import vl_convert as vlc

    vl_version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # "v6.4.1" -> "v6_4", as altair does
    source: str = vlc.javascript_bundle(vl_version=vl_version)  # type: ignore[call-arg]
    # the bundle declares top-level consts: wrap it so that a second output does not
    # redeclare them; it publishes window.vegaEmbed, evaluated once per page
    return "if (!window.vegaEmbed) { (function () {\n" + source + "\n})(); }"


def offline_html(spec: dict[str, Any], embed_options: dict[str, Any] | None = None) -> str:
    """An HTML fragment that draws ``spec`` (Vega-Lite) with the inline bundle."""
    div = f"rtnb-chart-{uuid.uuid4().hex}"
    bundle = _bundle().replace("</script", "<\\/script")
    spec_json = json.dumps(spec).replace("</", "<\\/")
    options = json.dumps(embed_options or {}).replace("</", "<\\/")
    return (
        f'<div class="rtnb-chart" id="{div}"></div>\n'
        f"<script>{bundle}</script>\n"
        "<script>(function () {\n"
        f"  const el = document.getElementById({json.dumps(div)});\n"
        f"  window.vegaEmbed(el, {spec_json}, {options}).catch(function (err) {{\n"
        "    el.textContent = 'rtnb chart failed to render: ' + err;\n"
        "  });\n"
        "})();</script>"
    )


def _renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    return {
        "text/html": offline_html(
            spec, {"renderer": "svg", **(metadata.get("embed_options") or {})}
        ),
        "text/plain": "<rtnb chart (Vega-Lite, rendered offline)>",
    }


alt.renderers.register(RENDERER, _renderer)


def enable(*, force: bool = False) -> None:
    """Make altair render with the offline bundle (if its CDN default is active, or ``force``)."""
    if force or alt.renderers.active == "default":
        alt.renderers.enable(RENDERER)
