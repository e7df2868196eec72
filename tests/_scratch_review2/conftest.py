from tests.routing.conftest import desk  # noqa: F401
from tests.campaigns.conftest import chat, widget_post, visitor, ORIGIN  # noqa: F401
