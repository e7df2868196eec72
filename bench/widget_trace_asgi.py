"""Bench-only: the product app with per-message timestamps, to see where a widget message's latency goes.

    WIDGET_TRACE_DIR=/tmp/trace BENCH_WIDGET_PRODUCT_APP=bench.widget_trace_asgi:application scripts/bench.sh widget
    python -m bench.widget_trace /tmp/trace          # join and summarise the records

Nothing here is used by the product. Each daphne process appends one line per event to
``$WIDGET_TRACE_DIR/<pid>.log``: ``<stage> <key> <CLOCK_MONOTONIC seconds>`` (the generator uses the same
clock), where the key is the generator's ``<tag>-<i>-<j>`` client id. Stages, in order:

* ``recv``: WidgetConsumer.receive_json entered (the frame was parsed);
* ``thread``: the handler started in the sync thread (after the wait for it);
* ``stored``: do_visitor_message returned (committed; the after-commit sends were handed over);
* ``acked``: the ack was written to the visitor's socket;
* ``sent``: the sender task's group_send to the inbox stream returned;
* ``console``: the console consumer's realtime_event entered; ``forwarded``: its send_json returned.
"""

from __future__ import annotations

import gc
import os
import re
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")
django.setup()

import campaigns.consumers as widget_consumers  # noqa: E402
from omnichannel import consumers as base_consumers  # noqa: E402
from omnichannel import realtime  # noqa: E402
from omnichannel.asgi import application  # noqa: E402, F401 - what daphne serves

TRACE_DIR = os.getenv("WIDGET_TRACE_DIR") or "/tmp/widget-trace"
os.makedirs(TRACE_DIR, exist_ok=True)
_out = open(os.path.join(TRACE_DIR, f"{os.getpid()}.log"), "a", buffering=1)  # noqa: SIM115 - process-long
BODY_RE = re.compile(r"^(\S+) v(\d+) #(\d+) ")


def mark(stage: str, key: str | None) -> None:
    if key:
        _out.write(f"{stage} {key} {time.monotonic():.6f}\n")


_gc_start = [0.0]


def _gc_callback(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_start[0] = time.monotonic()
    else:
        now = time.monotonic()
        _out.write(f"gc{info['generation']} {info['collected']}/{(now - _gc_start[0]) * 1000:.2f}ms {now:.6f}\n")
        if info["generation"] == 2 and os.getenv("WIDGET_TRACE_GC_TYPES"):  # what the full collections traverse
            from collections import Counter

            objects = gc.get_objects(2)
            modules = Counter(getattr(type(o), "__module__", "?") for o in objects)
            kinds = Counter(type(o).__qualname__ for o in objects)
            _out.write(f"# gen2 {len(objects)} objects, frozen {gc.get_freeze_count()}; by type "
                       f"{kinds.most_common(12)}; by module {modules.most_common(8)}\n")


gc.callbacks.append(_gc_callback)


def _key_of_frame(frame: dict) -> str | None:
    m = BODY_RE.match(frame.get("preview") or "")
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


_receive_json = widget_consumers.WidgetConsumer.receive_json
_message = widget_consumers.WidgetConsumer._message
_send_json = widget_consumers.WidgetConsumer.send_json


async def receive_json(self, content, **kwargs):
    if content.get("type") == "message":
        mark("recv", content.get("client_id"))
    return await _receive_json(self, content, **kwargs)


def message(self, content):
    mark("thread", content.get("client_id"))
    reply = _message(self, content)
    mark("stored", content.get("client_id"))
    return reply


async def send_json(self, content, close=False):
    await _send_json(self, content, close)
    if content.get("type") == "ack":
        mark("acked", content.get("client_id"))


widget_consumers.WidgetConsumer.receive_json = receive_json
widget_consumers.WidgetConsumer._message = message
widget_consumers.WidgetConsumer.send_json = send_json

_realtime_event = base_consumers.ReplayConsumer.realtime_event


async def realtime_event(self, message):
    frame = message["event"]
    key = _key_of_frame(frame) if frame.get("type") == "message" else None
    mark("console", key)
    await _realtime_event(self, message)
    mark("forwarded", key)


base_consumers.ReplayConsumer.realtime_event = realtime_event

_group_send_wrapped: set[int] = set()


def _wrap_layer(layer) -> None:
    if id(layer) in _group_send_wrapped:
        return
    _group_send_wrapped.add(id(layer))
    original = layer.group_send

    async def group_send(group, message):
        await original(group, message)
        frame = message.get("event") or {}
        if group.startswith("inbox.") and frame.get("type") == "message":
            mark("sent", _key_of_frame(frame))

    layer.group_send = group_send


_enqueue = realtime._enqueue


def enqueue(layer, group, frame):
    _wrap_layer(layer)
    return _enqueue(layer, group, frame)


realtime._enqueue = enqueue
