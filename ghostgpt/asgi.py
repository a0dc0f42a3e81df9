"""ASGI entry point (served by uvicorn, `manage.py serve`): HTTP through Django, WebSockets
through Channels."""

from __future__ import annotations

import os

import django
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

django.setup(set_prefix=False)
from ghostgpt.handler import GhostGPTASGIHandler  # noqa: E402

django_asgi_app = GhostGPTASGIHandler()

from chat import tracing  # noqa: E402

tracing.setup()  # OpenTelemetry traces, when an OTLP endpoint is configured

from chat.backends import registry  # noqa: E402  (needs the app registry ready)

# Start loading models in the background now, so /health can report progress
# and the first request does not pay the load time.
registry.warm_up()

from django.conf import settings  # noqa: E402

if settings.ROLE != "model":  # a model server has no accounts, hence no console to feed
    from chat.traffic import TrafficSampler

    TrafficSampler(float(settings.GHOSTGPT["TRAFFIC_SAMPLE_SECONDS"])).start()

from chat.agents.consumer import AgentConsumer  # noqa: E402
from ghostgpt.body_limits import BodyLimitMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies are counted as they arrive: 413 before Django reads or spools them.
        "http": BodyLimitMiddleware(django_asgi_app),
        # Dial-in agents (non-browser clients with a token: no origin check needed).
        "websocket": URLRouter([path("ws/agent", AgentConsumer.as_asgi())]),
    }
)
