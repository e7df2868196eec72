from django.urls import path

from agents import views as agent_views

from . import canned_views, views

app_name = "console"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("rows/", views.rows, name="rows"),
    path("canned/", views.canned, name="canned"),
    path("canned/mine/", canned_views.canned_mine, name="canned_mine"),
    path("canned/mine/<int:canned_id>/delete/", canned_views.canned_delete, name="canned_delete"),
    path("profile/", agent_views.profile, name="profile"),
    path("profile/tokens/<int:token_id>/revoke/", agent_views.revoke_token, name="revoke_token"),
    path("presence/", views.set_presence, name="presence"),
    path("sms/new/", views.new_sms, name="new_sms"),
    path("attachments/<int:attachment_id>/", views.attachment, name="attachment"),
    path("c/<int:conversation_id>/", views.conversation_page, name="conversation"),
    path("c/<int:conversation_id>/messages/", views.messages_fragment, name="messages"),
    path("c/<int:conversation_id>/panel/", views.panel_fragment, name="panel"),
    path("c/<int:conversation_id>/assignees/", views.assignees, name="assignees"),
    path("c/<int:conversation_id>/reply/", views.reply, name="reply"),
    path("c/<int:conversation_id>/assign/", views.assign, name="assign"),
    path("c/<int:conversation_id>/status/", views.change_status, name="status"),
    path("c/<int:conversation_id>/priority/", views.change_priority, name="priority"),
    path("c/<int:conversation_id>/subject/", views.change_subject, name="subject"),
    path("c/<int:conversation_id>/tags/", views.set_tags, name="tags"),
    path("c/<int:conversation_id>/merge/", views.merge, name="merge"),
    path("c/<int:conversation_id>/merge-contact/", views.merge_contact, name="merge_contact"),
    path("c/<int:conversation_id>/contact/", views.update_contact, name="contact"),
    path("c/<int:conversation_id>/end-chat/", views.end_chat, name="end_chat"),
    path("c/<int:conversation_id>/follow-up/", views.follow_up, name="follow_up"),
    path("c/<int:conversation_id>/wrap-up/", views.wrap_up, name="wrap_up"),
    path("c/<int:conversation_id>/accept/", views.accept_offer, name="accept_offer"),
]
