"""Every channel the product has, registered once at start-up (OmnichannelConfig.ready()).

Adding a channel: its folder here with a ``channel.py`` that declares ``CHANNEL``, one line below, and the
steps in docs/adding-a-channel.md.
"""

from __future__ import annotations

from conversations import channels

from .api.channel import CHANNEL as API
from .email.channel import CHANNEL as EMAIL
from .instagram.channel import CHANNEL as INSTAGRAM
from .messenger.channel import CHANNEL as MESSENGER
from .twilio_sms.channel import CHANNEL as SMS
from .webchat.channel import CHANNEL as WEBCHAT
from .whatsapp.channel import CHANNEL as WHATSAPP
from .x.channel import CHANNEL as X

CHANNELS = (WEBCHAT, API, SMS, EMAIL, MESSENGER, INSTAGRAM, WHATSAPP, X)


def register_all() -> None:
    for channel in CHANNELS:
        channels.register(channel)
