import pytest

from agents.models import AgentProfile
from campaigns.models import WidgetConfig
from conversations.models import ChannelKind, Inbox

ORIGIN = "https://shop.example"


@pytest.fixture
def chat(world):
    inbox = Inbox.objects.create(name="Website chat", kind=ChannelKind.WEBCHAT)
    world.support.inboxes.add(inbox)
    WidgetConfig.objects.create(inbox=inbox, allowed_origins=ORIGIN)
    AgentProfile.objects.filter(user=world.alice).update(status="online")
    return inbox


@pytest.fixture
def widget_post(client, chat):
    def post(path, data=None, origin=ORIGIN, **extra):
        import json

        return client.post(f"/widget/api/{chat.public_token}/{path}/", json.dumps(data or {}),
                           content_type="text/plain", HTTP_ORIGIN=origin, **extra)

    return post


@pytest.fixture
def visitor(widget_post):
    r = widget_post("session", {"page_url": "https://shop.example/pricing", "page_title": "Pricing",
                                "language": "en-US"})
    assert r.status_code == 200, r.content
    return r.json()
