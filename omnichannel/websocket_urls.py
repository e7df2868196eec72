from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from campaigns.consumers import WidgetConsumer
from conversations.consumers import ConsoleConsumer

websocket_urlpatterns = [
    # The console uses the session cookie, so its Origin must be one of ours (CSWSH).
    path("ws/console/", AllowedHostsOriginValidator(AuthMiddlewareStack(ConsoleConsumer.as_asgi()))),
    # The widget runs on customers' sites: WidgetConsumer checks the inbox's allowed origins itself
    # and authenticates with the signed visitor token (no cookies).
    path("ws/widget/<str:public_token>/", WidgetConsumer.as_asgi()),
]
