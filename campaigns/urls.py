from django.urls import path

from . import views

urlpatterns = [
    path("api/<str:public_token>/session/", views.session_view, name="widget-session"),
    path("api/<str:public_token>/prechat/", views.prechat_view, name="widget-prechat"),
    path("api/<str:public_token>/upload/", views.upload_view, name="widget-upload"),
    path("api/<str:public_token>/offline/", views.offline_view, name="widget-offline"),
    path("api/<str:public_token>/survey/", views.survey_view, name="widget-survey"),
    path("api/<str:public_token>/transcript/", views.transcript_view, name="widget-transcript"),
    path("files/<str:signed>/", views.attachment_view, name="widget-file"),
    path("popup/<str:public_token>/", views.popup_view, name="widget-popup"),
]
