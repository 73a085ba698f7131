"""The translation between a Django request/response and a mounted WSGI application."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.test import RequestFactory
from django_support import PREFIX

from hookspecs.types import WebMount
from samtycke_plugin.integrations.django.mount import django_response, mount_view, wsgi_environ
from samtycke_plugin.integrations.django.runtime import samtycke


def _echo(environ, start_response):
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"] or 0))
    start_response("201 Created", [
        ("Content-Type", "text/plain"), ("Content-Length", str(len(body) + 1)),
        ("Set-Cookie", "a=1; Path=/apps; HttpOnly"), ("Set-Cookie", "b=2; Max-Age=60"),
        ("Vary", "Accept"), ("Vary", "Cookie")])
    return [body, b"!"]


def _streaming(environ, start_response):
    closed = environ["test.closed"]

    class Body:
        def __iter__(self):
            yield b"one,"
            yield b"two"

        def close(self):
            closed.append(True)

    start_response("200 OK", [("Content-Type", "text/csv")])
    return Body()


def test_the_environ_has_the_mount_as_script_name_and_the_body_and_host() -> None:
    mount = WebMount(key="samtycke.pages", prefix=PREFIX, app=_echo)
    request = RequestFactory().post(f"{PREFIX}/clients/7/obtain?x=1", {"a": "å"},
                                    HTTP_BOOKING_TENANT="evil")
    environ = wsgi_environ(request, mount, samtycke())
    assert environ["SCRIPT_NAME"] == PREFIX and environ["PATH_INFO"] == "/clients/7/obtain"
    assert environ["QUERY_STRING"] == "x=1" and environ["REQUEST_METHOD"] == "POST"
    assert environ["wsgi.input"].read() == request.body
    assert environ["booking.host"] is samtycke().host
    assert environ["booking.sign_in"] == "/accounts/login/"
    assert "booking.tenant" not in environ and "booking.staff" not in environ  # signed out


def test_several_set_cookie_headers_and_repeated_headers_come_through() -> None:
    request = RequestFactory().post("/x", data=b"payload", content_type="text/plain")
    response = mount_view(WebMount(key="samtycke.echo", prefix="/x", app=_echo))(request)
    assert response.status_code == 201 and response.content == b"payload!"
    assert response.cookies["a"]["path"] == "/apps" and response.cookies["a"]["httponly"]
    assert response.cookies["b"].value == "2" and response.cookies["b"]["max-age"] == "60"
    assert response["Vary"] == "Accept, Cookie"


def test_a_body_without_length_is_streamed_and_closed() -> None:
    closed: list[bool] = []
    response = django_response(_streaming, {"test.closed": closed})
    assert isinstance(response, StreamingHttpResponse)
    assert b"".join(response.streaming_content) == b"one,two"
    response.close()
    assert closed == [True]


def test_manage_py_check_warns_about_sqlite_without_immediate_transactions() -> None:
    from samtycke_plugin.integrations.django.apps import sqlite_problems
    from samtycke_plugin.integrations.django.host import sqlite_options

    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"}
    assert [w.id for w in sqlite_problems({"default": sqlite}, "default")] == ["samtycke.W001"]
    ready = {**sqlite, "OPTIONS": sqlite_options()}
    assert sqlite_problems({"default": ready}, "default") == []
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "clinic"}
    assert sqlite_problems({"default": postgres}, "default") == []
