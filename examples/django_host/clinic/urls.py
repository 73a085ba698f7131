from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from examples.django_host.clinic import views

urlpatterns = [
    path("", views.index, name="index"),
    path("book/<slug:slug>/", views.book, name="book"),
    path("book/<slug:slug>/booked/", views.booked, name="booked"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("clients/", views.clients, name="clients"),
    path("clients/<int:pk>/", views.client, name="client"),
    path("apps/", views.app_menu, name="app_menu"),
]
