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
import re
import subprocess
import sys
import uuid
from typing import Any, Final

import altair as alt

from ..protocol.errors import SetupError

#: The altair renderer name rtnb registers: ``"rtnb"``.
RENDERER: Final = "rtnb"
#: Seconds bundling Vega (once per process, in a child process) may take: 300.
BUNDLE_TIMEOUT: Final = 300.0


def _in_subprocess(code: str, what: str) -> str:
    """Run ``code`` (which writes its answer to stdout) in a child interpreter.

    vl-convert builds its JavaScript bundles while holding the GIL -- seconds on
    a busy machine -- which would freeze rtnb's runtime thread (a connection
    then misses heartbeats and reconnects). A child process bundles instead.
    """
    done = subprocess.run(
        [sys.executable, "-c", code, alt.SCHEMA_VERSION],
        capture_output=True,
        timeout=BUNDLE_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise SetupError(
            f"bundling {what} with vl-convert failed ({' / '.join(tail)}); check that "
            "vl-convert-python is installed in this environment (pip install vl-convert-python)"
        )
    return done.stdout.decode("utf-8")


_VL_VERSION = 'v = "_".join(sys.argv[1].split(".")[:2])\n'  # "v6.4.1" -> "v6_4", as altair does


@functools.cache
def _bundle() -> str:
    """vega + vega-lite + vega-embed as one classic script (from vl-convert, no network)."""
    source = _in_subprocess(
        "import sys, vl_convert\n"
        + _VL_VERSION
        + "sys.stdout.buffer.write(vl_convert.javascript_bundle(vl_version=v).encode())",
        "Vega",
    )
    # the bundle declares top-level consts: wrap it so that a second output does not
    # redeclare them; it publishes window.vegaEmbed, evaluated once per page
    return "if (!window.vegaEmbed) { (function () {\n" + source + "\n})(); }"


@functools.cache
def jupyter_chart_esm() -> str:
    """altair's ``JupyterChart`` front end with Vega bundled in (its offline mode), bundled
    in a child process; ``LiveChart`` uses it."""
    return _in_subprocess(
        "import sys\nfrom altair import JupyterChart\nJupyterChart.enable_offline()\n"
        "sys.stdout.buffer.write(JupyterChart._esm.encode())",
        "altair's JupyterChart",
    )


#: What JSON embedded in a ``<script>`` must not contain raw. ``</script`` ends the
#: script, and ``<!--`` followed by ``<script`` enters the "script data double escaped"
#: state, where the real ``</script>`` no longer ends it (WHATWG HTML §13.2.5.4-29): an
#: entity id ``x<!--<script>`` blanked the chart and swallowed the rest of an exported
#: page. Escaped as JSON ``\\uXXXX`` they are the same strings to JavaScript.
_SCRIPT_UNSAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_SCRIPT_UNSAFE_RE = re.compile("[<>&\u2028\u2029]")


def script_json(value: Any) -> str:
    """``value`` as JSON safe to embed in an HTML ``<script>``: no data can end or
    comment out the script (``<``, ``>``, ``&`` and U+2028/9 as ``\\uXXXX``)."""
    return _SCRIPT_UNSAFE_RE.sub(lambda m: _SCRIPT_UNSAFE[m.group()], json.dumps(value))


def offline_html(spec: dict[str, Any], embed_options: dict[str, Any] | None = None) -> str:
    """An HTML fragment that draws ``spec`` (Vega-Lite) with the inline bundle."""
    div = f"rtnb-chart-{uuid.uuid4().hex}"
    bundle = _bundle().replace("</script", "<\\/script")  # (it holds no "<!--")
    spec_json = script_json(spec)
    options = script_json(embed_options or {})
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
