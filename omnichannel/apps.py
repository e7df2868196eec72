import gc
import os

from django.apps import AppConfig
from django.core.signals import request_finished
from django.db import models

from .forms import SafeJSONField


def _freeze_after_first_request(**kwargs) -> None:
    """Once per process, after its first request (URLconf, templates and compiled queries loaded by then):
    collect, then move every object alive into the garbage collector's permanent generation (gc.freeze).

    A web process holds ~160,000 long-lived objects (modules, models, templates), which each older-generation
    collection walked again: ~2 ms every ~20 console pages and ~370 ms now and then, in the middle of a
    request (measured in bench/). Frozen objects are never scanned (nor freed: they live as long as the
    process anyway). GC_FREEZE=0 turns this off.
    """
    request_finished.disconnect(_freeze_after_first_request)
    gc.collect()
    gc.freeze()


class OmnichannelConfig(AppConfig):
    name = "omnichannel"
    verbose_name = "Platform"

    def ready(self) -> None:
        # after the app registry: the channel specs import the core's models and actions
        from .integrations import registry

        registry.register_all()  # every channel's spec (conversations/channels.py)
        # Every JSON field of every admin form (and inline) parses with SafeJSONField: bad JSON is a form error.
        # after the app registry: the admin's modules import models (contenttypes, auth)
        from django.contrib.admin import options

        options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.JSONField] = {"form_class": SafeJSONField}  # inlines
        from django.contrib import admin  # after the app registry, as above

        for model_admin in admin.site._registry.values():  # registered before this app's ready()
            model_admin.formfield_overrides.setdefault(models.JSONField, {})["form_class"] = SafeJSONField
        # Changelist filters typed in the URL: no regular expressions (PostgreSQL refuses a bad one: a 500).
        lookup_allowed = admin.ModelAdmin.lookup_allowed

        def no_regex_lookups(self, lookup, value, request=None):
            if lookup.endswith(("__regex", "__iregex")):
                return False  # the admin answers 400 (DisallowedModelAdminLookup)
            return lookup_allowed(self, lookup, value, request)

        admin.ModelAdmin.lookup_allowed = no_regex_lookups
        if os.getenv("GC_FREEZE", "1") != "0":
            request_finished.connect(_freeze_after_first_request)
