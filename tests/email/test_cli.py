"""The command line: ``samtycke request all`` (with its progress bar) and
``samtycke outbox send`` against a real SMTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from batch_support import practice_of_every_kind, rows
from click.testing import CliRunner
from hostkit import TestHost
from smtp_support import CLI_HOSTS, SmtpServer, running_server

from samtycke_plugin.cli import main
from samtycke_plugin.email.batch import Reason

HOST = ["--host", "smtp_support:cli_host"]
#: The same host with staff, and the practice's owner asking (``request all`` needs them).
STAFFED = ["--host", "cli_support:staffed_host"]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from running_server()


@pytest.fixture
def cli(host: TestHost, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for key in list(os.environ):
        if key.startswith("SAMTYCKE_SMTP_"):
            monkeypatch.delenv(key)
    CLI_HOSTS.append(host)
    yield CliRunner()
    CLI_HOSTS.remove(host)


def test_request_all_then_outbox_send(host: TestHost, smtp_server: SmtpServer, cli: CliRunner) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    for i in range(7):
        host.new_client(tenant, email=f"k{i}@example.org")
    host.new_client(tenant, email=None)

    result = cli.invoke(main, [*STAFFED, "request", "all", "--staff", "owner", "--tenant", tenant, "--chunk-size", "3", "--yes"])
    assert result.exit_code == 0, result.output
    assert "7 asked" in result.output and "1 have no usable e-mail address" in result.output
    assert "3/8 clients" in result.output and "8/8 clients" in result.output  # progress
    again = cli.invoke(main, [*STAFFED, "request", "all", "--staff", "owner", "--tenant", tenant, "--yes"])
    assert again.exit_code == 0 and "0 asked" in again.output
    assert "7 already have a pending request" in again.output

    sent = cli.invoke(main, [*HOST, "outbox", "send", "--tenant", tenant, "--limit", "3"],
                      env=smtp_server.env())
    assert sent.exit_code == 0, sent.output
    assert "Done: 7 sent" in sent.output
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [f"k{i}@example.org" for i in range(7)]
    nothing = cli.invoke(main, [*HOST, "outbox", "send", "--tenant", tenant], env=smtp_server.env())
    assert nothing.exit_code == 0 and "Done: 0 sent" in nothing.output


def test_outbox_send_reports_missing_smtp_settings(host: TestHost, cli: CliRunner) -> None:
    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    host.new_client(tenant)
    assert cli.invoke(main, [*STAFFED, "request", "all", "--staff", "owner", "--tenant", tenant, "--yes"]).exit_code == 0
    result = cli.invoke(main, [*HOST, "outbox", "send", "--tenant", tenant])
    assert result.exit_code == 1
    assert "Problem: No SMTP server is configured" in result.output
    assert "1 to retry later" in result.output


def test_commands_explain_what_they_need(cli: CliRunner) -> None:
    result = cli.invoke(main, ["outbox", "send"])
    assert result.exit_code == 2 and "--host" in result.output
    inactive = cli.invoke(main, [*STAFFED, "request", "all", "--staff", "owner", "--tenant", "tnever-activated"])
    assert inactive.exit_code == 1 and "not active" in inactive.output


def test_outbox_send_loop_keeps_sending_until_stopped(
    host: TestHost, smtp_server: SmtpServer, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from samtycke_plugin.email import requests as mail_requests

    hooks = host.hooks()
    tenant = host.new_tenant()
    host.activate(hooks, tenant)
    first = host.new_client(tenant, email="first@example.org")
    mail_requests.send_request(host, tenant, first, actor="staff:s1")
    host.session().commit()
    rounds: list[float] = []

    def sleep(seconds: float) -> None:  # the loop's wait: queue more mail, then stop
        rounds.append(seconds)
        if len(rounds) == 1:
            later = host.new_client(tenant, email="later@example.org")
            mail_requests.send_request(host, tenant, later, actor="staff:s1")
            host.session().commit()
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    result = cli.invoke(
        main, [*HOST, "outbox", "send", "--loop", "--interval", "5", "--tenant", tenant],
        env=smtp_server.env(),
    )
    assert result.exit_code == 0, result.output
    assert rounds == [5.0, 5.0] and "Stopped." in result.output
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["first@example.org", "later@example.org"]


def test_request_all_shows_the_preview_and_sends_nothing_unless_confirmed(
    host: TestHost, cli: CliRunner
) -> None:
    tenant, kinds = practice_of_every_kind(host)
    before = rows(host, tenant)
    command = [*STAFFED, "request", "all", "--staff", "owner", "--tenant", tenant]

    no = cli.invoke(main, [*command, "--verbose"], input="n\n")
    assert no.exit_code == 0, no.output
    assert "Would be asked by e-mail: 2 of 9 clients." in no.output
    assert "Withdrew their consent: 1" in no.output and "Declined to consent: 1" in no.output
    assert "No usable e-mail address: 1" in no.output and "Already have valid consent: 1" in no.output
    assert "Already asked: an unanswered request is pending or waiting to be sent: 2" in no.output
    (withdrew,) = kinds[Reason.WITHDRAWN]
    assert f"Wilma Återkallat ({withdrew})" in no.output  # --verbose names them
    assert "Send 2 requests? [y/N]" in no.output and "Nothing was sent." in no.output
    assert rows(host, tenant) == before

    quiet = cli.invoke(main, [*command, "--locale", "sv"], input="\n")  # the default is no
    assert "Skulle tillfrågas via e-post: 2 av 9 klienter." in quiet.output
    assert "Wilma" not in quiet.output and "Inget skickades." in quiet.output
    assert rows(host, tenant) == before

    yes = cli.invoke(main, command, input="y\n")
    assert yes.exit_code == 0, yes.output
    assert "2 asked" in yes.output and "1 declined and 1 withdrew" in yes.output
    assert rows(host, tenant)["outbox"] == before["outbox"] + 2

    again = cli.invoke(main, [*command, "--yes"])  # no question asked
    assert again.exit_code == 0 and "[y/N]" not in again.output
    assert "Would be asked by e-mail: 0 of 9 clients." in again.output and "0 asked" in again.output
