from channels.auth import AuthMiddlewareStack
from django.urls import path

from campaigns.consumers import WidgetConsumer
from conversations.consumers import ConsoleConsumer
from omnichannel.consumers import SameOriginWebsocket

websocket_urlpatterns = [
    # The console uses the session cookie, so its Origin must be one of ours in scheme, host and port (CSWSH).
    path("ws/console/", SameOriginWebsocket(AuthMiddlewareStack(ConsoleConsumer.as_asgi()))),
    # The widget runs on customers' sites: WidgetConsumer checks the inbox's allowed origins itself
    # and authenticates with the signed visitor token (no cookies).
    path("ws/widget/<str:public_token>/", WidgetConsumer.as_asgi()),
]
