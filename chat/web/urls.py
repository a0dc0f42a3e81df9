from __future__ import annotations

from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from chat.agents import views as agent_views

from . import api, live, pages, session

urlpatterns = [
    path("", pages.home, name="home"),
    path("docs", pages.docs, name="docs"),
    path("api.json", pages.api_json),
    path("share/<str:share_id>", pages.share_page, name="share"),
    path("vendor/<path:path>", pages.vendor),
    path("static/<path:path>", pages.own_static),
    path("gg-doc-viewer.js", pages.doc_viewer),
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["chat"]), name="javascript-catalog"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/session/bootstrap", session.SessionBootstrapApi.as_view()),
    path("api/conversations", api.ConversationListApi.as_view()),
    path("api/conversations/<str:conversation_id>", api.ConversationDetailApi.as_view()),
    path("api/conversations/<str:conversation_id>/export", api.ConversationExportApi.as_view()),
    path("api/export", api.AccountExportApi.as_view()),
    path("api/conversations/<str:conversation_id>/messages", live.send_turn),
    path(
        "api/conversations/<str:conversation_id>/messages/<str:message_id>/model-view",
        api.MessageModelViewApi.as_view(),
    ),
    path("api/messages/<str:message_id>/stream", live.watch),
    path("api/messages/<str:message_id>/stop", live.stop),
    path("api/ask", live.ask),
    path("api/connections", agent_views.connections),
    path("api/share", api.ShareCreateApi.as_view()),
    path("api/share/<str:share_id>", api.ShareDetailApi.as_view()),
    path("api/share/<str:share_id>/continue", api.ShareContinueApi.as_view()),
]
