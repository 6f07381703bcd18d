"""rtnb.panel: served Panel pages get anywidget's front end from here, not from a CDN."""

from __future__ import annotations

import base64
import pathlib

import anywidget
import ipywidgets  # type: ignore[import-untyped]
import pytest

import rtnb
from rtnb import panel as rtnb_panel
from tests.widgets.conftest import Recorder

pytest.importorskip("ipywidgets_bokeh")


class Plain(anywidget.AnyWidget):
    _esm = "export default { render() {} };"


def _model(widget: object) -> object:
    from ipywidgets_bokeh.widget import IPyWidget

    return IPyWidget(widget=widget)


def test_the_bundle_is_the_installed_anywidget_front_end_and_the_rest_a_fragment() -> None:
    url = rtnb_panel.bundle_url()
    assert url.startswith("data:text/javascript;base64,") and url.endswith("#")
    # ipywidgets_bokeh appends "/anywidget@<version>/dist/index": a fragment fetch() drops
    body = base64.b64decode(url[len("data:text/javascript;base64,") : -1])
    installed = pathlib.Path(anywidget.__file__).with_name("nbextension") / "index.js"
    assert body == installed.read_bytes()
    assert b'define(["@jupyter-widgets/base"]' in body  # the AMD module the CDN would serve


def test_a_page_of_anywidgets_is_served_locally(recorder: Recorder) -> None:
    model = _model(ipywidgets.VBox([Plain(), ipywidgets.Button()]))
    assert rtnb_panel.serve_locally(model)
    assert model.cdn == rtnb_panel.bundle_url()  # type: ignore[attr-defined]


def test_a_page_needing_another_widget_package_keeps_the_cdn(recorder: Recorder) -> None:
    other = Plain()
    other._model_module = "jupyter-leaflet"  # as ipyleaflet's widgets are
    model = _model(ipywidgets.VBox([Plain(), other]))
    assert not rtnb_panel.serve_locally(model)
    assert model.cdn == "https://unpkg.com"  # type: ignore[attr-defined]


def test_rtnb_widgets_give_panel_a_pane_and_enable_serves_every_ipywidget_pane(
    recorder: Recorder,
) -> None:
    pn = pytest.importorskip("panel")
    table = Plain()
    pane = rtnb_panel.pane(table)
    assert isinstance(pane, pn.pane.IPyWidget) and rtnb_panel.is_enabled()
    assert rtnb.panel is rtnb_panel
    rtnb.panel.enable()  # again: nothing changes
    from panel.pane.ipywidget import IPyWidget

    model = IPyWidget._get_ipywidget(pane, table, None, None, None)  # served (no Jupyter comm)
    assert model.cdn == rtnb_panel.bundle_url()
