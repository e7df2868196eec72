from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from reporting import views as reporting_views

from . import views
from .integrations.twilio_sms import webhooks as twilio_webhooks

handler500 = views.server_error

admin.site.site_header = "Omnichannel administration"
admin.site.site_title = "Omnichannel admin"

# A 404 under /api/ is JSON in the API's error shape; elsewhere, Django's page.
handler404 = "omnichannel.api.not_found"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:inbox", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("console/", include("conversations.urls")),
    path("reports/sla/", reporting_views.sla_report, name="sla-report"),
    path("reports/routing/", reporting_views.routing_report, name="routing-report"),
    path("api/v1/", include("conversations.api_urls")),
    path("widget/", include("campaigns.urls")),
    path("webhooks/twilio/<str:token>/sms/", twilio_webhooks.inbound, name="twilio-inbound"),
    path("webhooks/twilio/<str:token>/status/", twilio_webhooks.status, name="twilio-status"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The schema read by Swagger UI and Redoc, both served from our static files (drf-spectacular-sidecar);
    # Swagger UI's settings come as a script file of their own (?script), so no page has an inline script.
    path("api/v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
         name="api-redoc"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("demo/", views.demo_page, name="demo"),
    path("demo/messages/", views.demo_messages, name="demo-messages"),
]
