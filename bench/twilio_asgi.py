"""The product's ASGI app plus one trivial Django view: the baseline of bench_twilio_webhook.

``POST /bench/trivial/`` goes through the same daphne process, the same Django ASGI handler and the
same middleware as the Twilio webhook, and answers the same empty TwiML, but does nothing else: no
signature check, no database, no Celery, no channel layer. Every other URL is the product's
(``omnichannel.urls``, included unchanged), so the webhook measured is the real one.

    daphne -b 127.0.0.1 -p 8765 bench.twilio_asgi:application
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omnichannel.settings")

from django.conf import settings  # noqa: E402

settings.ROOT_URLCONF = __name__  # before the app is built (and before any request resolves a URL)

import django  # noqa: E402

django.setup()  # include() below imports omnichannel.urls, which imports models

from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


@csrf_exempt
@require_POST
def trivial(request: HttpRequest) -> HttpResponse:
    request.POST  # noqa: B018 - parse the form like the webhook does
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


urlpatterns = [
    path("bench/trivial/", trivial, name="bench-trivial"),
    path("", include("omnichannel.urls")),
]

from omnichannel.asgi import application  # noqa: E402, F401
