from django.urls import path

from . import api

urlpatterns = [
    path("contacts/", api.ContactListApi.as_view(), name="api-contacts"),
    path("contacts/<int:contact_id>/", api.ContactDetailApi.as_view(), name="api-contact"),
    path("conversations/", api.ConversationListApi.as_view(), name="api-conversations"),
    path("conversations/<int:conversation_id>/", api.ConversationDetailApi.as_view(), name="api-conversation"),
    path("conversations/<int:conversation_id>/routing/", api.ConversationRoutingApi.as_view(), name="api-routing"),
    path("conversations/<int:conversation_id>/messages/", api.MessageListApi.as_view(), name="api-messages"),
    path("conversations/<int:conversation_id>/messages/<int:message_id>/", api.MessageDetailApi.as_view(),
         name="api-message"),
    path("conversations/<int:conversation_id>/typing/", api.ConversationTypingApi.as_view(), name="api-typing"),
    path("inboxes/<int:inbox_id>/incoming/", api.InboxIncomingApi.as_view(), name="api-incoming"),
    path("inboxes/<int:inbox_id>/sms/messages/", api.ProactiveSmsApi.as_view(), name="api-sms-send"),
    path("inboxes/<int:inbox_id>/sms/consent/", api.SmsConsentApi.as_view(), name="api-sms-consent"),
    path("attachments/<int:attachment_id>", api.AttachmentDownloadApi.as_view(), name="api-attachment"),
]
