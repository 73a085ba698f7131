"""All of the platform's app glue, Samtycke included, in one module.

This is the only module of the booking platform that knows apps exist; what every
Flask + SQLAlchemy host shares is in :mod:`samtycke_plugin.integrations.flask`.  What
is left here is this platform's own (the README walks through it):

1. the database: SQLite connection behaviour and the apps' migrations;
2. :class:`PlatformHost`: what apps ask the platform (its clients, practices, staff and
   what their role may do in the apps (:data:`APP_ROLES`), mailbox, page layout and
   client profile address);
3. :class:`Apps`: the platform's activation table and who is signed in;
4. :func:`install`: the apps' pages mounted into the site, the helpers for templates.
"""

from __future__ import annotations

from flask import render_template, session, url_for

from examples.host_app import mailer
from examples.host_app.inputs import db_id
from examples.host_app.models import AppActivation, Client, Practice, Staff
from examples.host_app.runtime import current_staff
from hookspecs import types as hs
from samtycke_plugin.integrations import sqlalchemy_tables as tables
from samtycke_plugin.integrations.flask import FlaskApps, FlaskHost, Practitioner
from samtycke_plugin.integrations.flask import prepare_engine as prepare_engine
from samtycke_plugin.integrations.flask import upgrade_apps as upgrade_apps

#: What each of the platform's roles may do in the apps (role → permission names, "*"
#: for all): the owner everything, other staff record consent only.  Edit it to change
#: what a role may do; a role missing here may do nothing in the apps.
APP_ROLES: dict[str, list[str]] = {"owner": ["*"], "staff": [hs.Permission.RECORD_CONSENT.value]}


# -- 2. the host interface: tenants are practice ids, clients and staff are ids (as text) --


class PlatformHost(tables.TableClients, tables.TableStaff, FlaskHost):
    clients = tables.ClientColumns(ref=Client.id, tenant=Client.practice_id, name=Client.name,
                                   email=Client.email, locale=Client.locale)
    practices = tables.PracticeColumns(ref=Practice.id, name=Practice.name,
                                       email=Practice.email, phone=Practice.phone,
                                       locale=Practice.locale)
    # the member's own flag can withhold recording consent that their role allows
    staff = tables.StaffColumns(ref=Staff.id, tenant=Staff.practice_id, name=Staff.name,
                                role=Staff.role, can_record_consent=Staff.can_record_consent)
    roles = APP_ROLES

    def page_layout(self, page: hs.AppPage) -> str:
        return render_template("app_page.html", page=page)

    def client_path(self, tenant: hs.TenantRef, client: hs.ClientRef) -> str | None:
        return url_for("staff.client", client_id=int(client))


def dev_mailbox(host: FlaskHost, tenant: str, message: hs.OutgoingEmail) -> None:
    """``PlatformHost(mailbox=dev_mailbox)`` in development: the apps' mail goes into the
    platform's development mailbox (with SMTP configured the app sends it itself)."""
    mailer.to_dev_mailbox(host.session(), host.now(), db_id(tenant), "samtycke", message.to,
                          message.subject, message.text, message.html, message.message_id)


# -- 3. the apps: this platform's activation table and sign-in -----------------------------


class Apps(FlaskApps):
    activations = tables.ActivationColumns(
        tenant=AppActivation.practice_id, key=AppActivation.app_key, active=AppActivation.active,
        changed_at=AppActivation.changed_at, changed_by=AppActivation.changed_by)

    def signed_in(self) -> Practitioner | None:
        # from the platform's own session, never from the request; what they may do: the host's
        return (s := current_staff()) and self.practitioner(s.practice_id, s.id, session["sid"])
