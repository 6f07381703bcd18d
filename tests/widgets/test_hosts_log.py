"""The browser tests' check of a host's log: every traceback counts but tornado's own
websocket-closed noise when a page goes away (the CI log of session 7's first run)."""

from __future__ import annotations

from tests.widgets.hosts_harness import tracebacks

TORNADO_CLOSED = """[Voila] Kernel started: 6d41
Task exception was never retrieved
future: <Task finished name='Task-93' coro=<WebSocketProtocol13.write_message.<locals>.wrapper() done> exception=WebSocketClosedError()>
Traceback (most recent call last):
  File "/x/tornado/websocket.py", line 1140, in wrapper
    await fut
tornado.iostream.StreamClosedError: Stream is closed

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/x/tornado/websocket.py", line 1142, in wrapper
    raise WebSocketClosedError()
tornado.websocket.WebSocketClosedError
[Voila] WARNING | Notebook widgets.ipynb is not trusted
"""

RTNB_ERROR = """[IPKernelApp] ERROR | Exception in comm handler
Traceback (most recent call last):
  File "/x/rtnb/widgets/table.py", line 10, in _on_msg
    raise KeyError(key)
KeyError: 'rows'
[Voila] Kernel shutdown
"""

CHAINED_INTO_RTNB = """Traceback (most recent call last):
  File "/x/tornado/websocket.py", line 1140, in wrapper
    await fut
tornado.iostream.StreamClosedError: Stream is closed

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/x/rtnb/client/session.py", line 3, in close
    raise RuntimeError("close failed")
RuntimeError: close failed
"""


def test_tornados_websocket_closed_chain_is_host_noise() -> None:
    assert tracebacks(TORNADO_CLOSED) == []


def test_any_other_traceback_is_reported_whole() -> None:
    found = tracebacks(TORNADO_CLOSED + RTNB_ERROR)
    assert len(found) == 1
    assert found[0].endswith("KeyError: 'rows'")
    assert "rtnb/widgets/table.py" in found[0]


def test_a_chain_ending_in_an_rtnb_error_is_reported_even_if_it_began_in_tornado() -> None:
    found = tracebacks(CHAINED_INTO_RTNB)
    assert len(found) == 1
    assert found[0].startswith("Traceback") and found[0].endswith("RuntimeError: close failed")
    assert "StreamClosedError" in found[0]  # the chain is one traceback


def test_a_traceback_cut_off_at_the_end_of_the_log_is_reported() -> None:
    found = tracebacks('Traceback (most recent call last):\n  File "/x/rtnb/a.py", line 1')
    assert len(found) == 1
