"""Failure alerts, from real failed fetch_data runs: the message, the sensor, the webhook, email."""

import email
import email.policy
import json
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from book_pipeline.core.books.files import mapping_key_for
from book_pipeline.core.settings import VARIABLES
from book_pipeline.definitions import defs
from book_pipeline.defs.alerts import (
    ALERT_SENSOR_NAME,
    EMAIL_SENSOR_NAME,
    RunFailureAlert,
    alert_for_run,
    book_pipeline_failure_alerts,
    email_alert_sensor,
)
from book_pipeline_tests.support.data_folder import point_count
from book_pipeline_tests.support.loopback_http import WEBHOOK_TOKEN, webhook_server
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

# Its tests share a module-scoped fixture: one worker runs them all, and the set-up once
# (book_pipeline_tests/conftest.py).
pytestmark = pytest.mark.xdist_group(__name__)

BROKEN_LINE = "99 ::: A Title Without Its Year ::: Someone ::: Text"


@dataclass(frozen=True)
class FailedRun:
    instance: dg.DagsterInstance
    run: dg.DagsterRun
    run_failure: dg.DagsterEvent
    broken_file: Path


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailedRun]:
    """fetch_data over two good files and one with a bad third line, once for this module."""
    books_dir = tmp_path_factory.mktemp("alerts") / "books"
    books_dir.mkdir()
    good_files = write_synthetic_books(books_dir, files=2, books_per_file=2)
    broken = books_dir / "broken file.txt"
    broken.write_text(good_files[0].read_text() + BROKEN_LINE + "\n")
    with dg.instance_for_test() as instance:
        result = fetch_data_job().execute_in_process(
            run_config=fetch_data_run_config(books_dir, books_dir.parent / "data"),
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        yield FailedRun(instance, result.dagster_run, result.get_run_failure_event(), broken)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int | None = None) -> list[str]:
        return [r.getMessage() for r in self.records if level is None or r.levelno == level]


def evaluate(sensor: dg.SensorDefinition, failed: FailedRun) -> Records:
    """Evaluate a run-failure sensor for real against the failed run; what it logged."""
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=failed.instance,
        dagster_run=failed.run,
        dagster_event=failed.run_failure,
    )
    records = Records()
    context.log.addHandler(records)
    assert sensor(context) is None
    return records


def expected_step(failed: FailedRun) -> tuple[str, str, int]:
    """The broken file's transform step: step key, file, line."""
    key = mapping_key_for(failed.broken_file.name)
    return f"book_embeddings.refuse_book_description_file[{key}]", str(failed.broken_file), 3


def test_alert_names_job_run_failed_step_file_and_line(failed_run: FailedRun) -> None:
    alert = alert_for_run(failed_run.instance, failed_run.run, failed_run.run_failure)

    assert alert.job_name == "fetch_data"
    assert alert.run_id == failed_run.run.run_id
    [step] = alert.failed_steps
    step_key, file, line = expected_step(failed_run)
    assert (step.step_key, step.file, step.line) == (step_key, file, line)
    assert step.error.startswith("broken file.txt, line 3: expected '<Title> (<Year>)'")
    lines = alert.text.splitlines()
    assert lines[0] == f"Dagster job fetch_data failed: run {failed_run.run.run_id}"
    assert lines[1] == "1 failed step:"
    where = f"(file {failed_run.broken_file}, line 3)"
    assert lines[2] == f"- {step_key} {where}: {step.error}"


def test_the_alerted_run_loaded_the_good_files(failed_run: FailedRun) -> None:
    """The run failed on the bad file, and still loaded the two good ones (2 books each)."""
    assert point_count(failed_run.broken_file.parent.parent / "data") == 4


def test_alert_of_a_run_where_every_file_is_refused_names_each_file_and_line(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    no_year = books_dir / "no year.txt"
    no_year.write_text(BROKEN_LINE + "\n")
    no_author = books_dir / "no author.txt"
    no_author.write_text("1 ::: Emma (1815) ::: Jane Austen ::: A.\n2 ::: Emma (1815) ::: ::: B\n")
    result = fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(books_dir, data_dir),
        instance=instance,
        raise_on_error=False,
    )

    alert = alert_for_run(instance, result.dagster_run, result.get_run_failure_event())

    refusal_step = "book_embeddings.refuse_book_description_file[{}]"
    assert sorted((step.step_key, step.file, step.line) for step in alert.failed_steps) == sorted(
        [
            (refusal_step.format(mapping_key_for(no_year.name)), str(no_year), 1),
            (refusal_step.format(mapping_key_for(no_author.name)), str(no_author), 2),
        ]
    )
    lines = alert.text.splitlines()
    assert lines[1] == "2 failed steps:"
    assert any(
        f"(file {no_author}, line 2): no author.txt, line 2: the author" in line for line in lines
    )


def test_alert_of_an_endpoint_down_for_good_names_the_endpoint(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=1, books_per_file=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down_url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    result = fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(
            books_dir,
            data_dir,
            provider="openai",
            openai_base_url=down_url,
            openai_api_key="sk-test",
            openai_max_retries=0,
        ),
        instance=instance,
        raise_on_error=False,
    )

    alert = alert_for_run(instance, result.dagster_run, result.get_run_failure_event())

    [step] = alert.failed_steps
    assert step.step_key.startswith("book_embeddings.create_vector_embeddings[")
    # The endpoint's own error, not Dagster's "Exceeded max_retries" wrapped around it.
    assert step.error.startswith(
        f"EmbeddingEndpointError: the embedding endpoint {down_url}/embeddings could not be reached"
    )
    assert (step.file, step.line) == (None, None)


def test_a_run_failing_outside_any_step_is_explained() -> None:
    alert = RunFailureAlert("fetch_data", "run-1", (), "resource 'qdrant' failed to start")
    assert alert.text.splitlines()[1] == "resource 'qdrant' failed to start"


def test_sensor_logs_one_json_line_and_posts_the_alert_to_the_webhook(
    failed_run: FailedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    with webhook_server() as webhook:
        monkeypatch.setenv(VARIABLES.alert_webhook_url.name, webhook.url)
        records = evaluate(book_pipeline_failure_alerts, failed_run)

    [(path, content_type, body)] = webhook.posts
    assert path == f"/services/{WEBHOOK_TOKEN}"
    assert content_type == "application/json"
    alert = alert_for_run(failed_run.instance, failed_run.run, failed_run.run_failure)
    assert body["text"] == alert.text
    assert body["job_name"] == "fetch_data"
    assert body["run_id"] == failed_run.run.run_id
    [posted_step] = body["failed_steps"]
    posted = (posted_step["step_key"], posted_step["file"], posted_step["line"])
    assert posted == expected_step(failed_run)
    assert posted_step["error"] == alert.failed_steps[0].error

    [line] = records.messages(logging.ERROR)
    logged = json.loads(line)
    assert logged["alert"] == "run_failure"
    assert logged["run_id"] == failed_run.run.run_id
    assert logged["failed_steps"] == body["failed_steps"]
    assert any("posted to the webhook at 127.0.0.1" in m for m in records.messages(logging.INFO))
    assert not any(WEBHOOK_TOKEN in message for message in records.messages())


@pytest.mark.parametrize("webhook_fault", ["nothing listening", "answers 500"])
def test_a_failing_webhook_is_logged_and_the_sensor_goes_on(
    failed_run: FailedRun, monkeypatch: pytest.MonkeyPatch, webhook_fault: str
) -> None:
    with webhook_server(status=500) as webhook:
        url = webhook.url
        if webhook_fault == "answers 500":
            monkeypatch.setenv(VARIABLES.alert_webhook_url.name, url)
            records = evaluate(book_pipeline_failure_alerts, failed_run)
            assert len(webhook.posts) == 1
    if webhook_fault == "nothing listening":  # the server has shut down: the port is closed
        monkeypatch.setenv(VARIABLES.alert_webhook_url.name, url)
        records = evaluate(book_pipeline_failure_alerts, failed_run)

    json_line, webhook_error = records.messages(logging.ERROR)
    assert json.loads(json_line)["run_id"] == failed_run.run.run_id
    assert webhook_error.startswith("alert webhook at 127.0.0.1 failed: ")
    assert ("500" if webhook_fault == "answers 500" else "refused") in webhook_error
    assert not any(WEBHOOK_TOKEN in message for message in records.messages())


def test_without_a_webhook_the_sensor_only_logs(
    failed_run: FailedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VARIABLES.alert_webhook_url.name, raising=False)
    records = evaluate(book_pipeline_failure_alerts, failed_run)
    [line] = records.messages()
    assert json.loads(line)["job_name"] == "fetch_data"


def test_the_alert_sensor_is_in_the_code_location_and_running_by_default() -> None:
    [sensor] = [sensor for sensor in defs.sensors or [] if sensor.name == ALERT_SENSOR_NAME]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert isinstance(sensor, dg.RunStatusSensorDefinition)


EMAIL_SETTINGS = {
    VARIABLES.alert_email_to.name: "ops@example.com, books@example.com",
    VARIABLES.alert_email_from.name: "dagster@example.com",
    VARIABLES.alert_smtp_host.name: "smtp.example.com",
    VARIABLES.alert_smtp_port.name: "587",
    VARIABLES.alert_smtp_password.name: "planted-smtp-password",
}


def test_email_sensor_only_when_configured(caplog: pytest.LogCaptureFixture) -> None:
    assert email_alert_sensor({}) is None
    with caplog.at_level(logging.WARNING, logger="book_pipeline.defs.alerts"):
        assert email_alert_sensor({VARIABLES.alert_email_to.name: "ops@example.com"}) is None
    assert f"{VARIABLES.alert_smtp_password.name} not: no email alerts" in caplog.text
    sensor = email_alert_sensor(EMAIL_SETTINGS)
    assert sensor is not None and sensor.name == EMAIL_SENSOR_NAME


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str
    password: str


@dataclass
class MailServer:
    host: str
    port: int
    cert_file: Path
    logins: list[tuple[str, str]] = field(default_factory=list)
    messages: list[ReceivedMail] = field(default_factory=list)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (as an IP subjectAltName, which the client's
    hostname check matches) and its key, from the system's openssl."""
    openssl = shutil.which("openssl")
    assert openssl, "the SMTP test needs the openssl command to make its TLS certificate"
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class _FreePortController(Controller):
    """aiosmtpd's threaded server, bound to port 0: the port the system chose is read back
    from the listening socket before the controller connects to check the server is up."""

    async def _create_server(self) -> Any:
        server = await super()._create_server()
        self.port = server.sockets[0].getsockname()[1]
        return server


@contextmanager
def smtp_server(directory: Path, login: str, password: str) -> Iterator[MailServer]:
    """A real SMTP server on a free port of 127.0.0.1 that, like a mail provider's submission
    port, requires STARTTLS and then AUTH (PLAIN or LOGIN) with this login and password before
    it takes a message; it keeps every message it accepts."""
    cert, key = self_signed_certificate(directory)
    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_context.load_cert_chain(cert, key)
    mail = MailServer(host="127.0.0.1", port=0, cert_file=cert)

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        credentials = (data.login.decode(), data.password.decode())
        mail.logins.append(credentials)
        # handled=False: aiosmtpd answers a refusal itself (535), as a provider does.
        return AuthResult(success=credentials == (login, password), handled=False, auth_data=data)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            data = session.auth_data
            mail.messages.append(
                ReceivedMail(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=envelope.original_content or b"",
                    login=data.login.decode(),
                    password=data.password.decode(),
                )
            )
            return "250 Message accepted for delivery"

    controller = _FreePortController(
        Handler(),
        hostname=mail.host,
        port=0,
        tls_context=tls_context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=True,
        # A client that stalls is cut off after 5 s instead of aiosmtpd's default 300 s.
        timeout=5,
        ready_timeout=5,
    )
    controller.start()
    try:
        mail.port = controller.port
        yield mail
    finally:
        controller.stop()


def test_email_sensor_sends_the_alert_to_a_real_smtp_server(
    failed_run: FailedRun,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender, password = (
        EMAIL_SETTINGS[VARIABLES.alert_email_from.name],
        EMAIL_SETTINGS[VARIABLES.alert_smtp_password.name],
    )
    caplog.set_level(logging.DEBUG)
    with smtp_server(tmp_path, login=sender, password=password) as mail:
        # Dagster's send_email_via_starttls upgrades with ssl.create_default_context(): it
        # verifies the certificate against the system's CAs and checks the host name. The
        # client is left as it runs in production; the test only makes it trust the throwaway
        # certificate, the way OpenSSL reads its CA file from SSL_CERT_FILE when the default
        # context loads the default verify paths (the IP subjectAltName matches 127.0.0.1).
        monkeypatch.setenv("SSL_CERT_FILE", str(mail.cert_file))
        settings = {
            **EMAIL_SETTINGS,
            VARIABLES.alert_smtp_host.name: mail.host,
            VARIABLES.alert_smtp_port.name: str(mail.port),
        }
        sensor = email_alert_sensor(settings)
        assert sensor is not None

        records = evaluate(sensor, failed_run)

    [received] = mail.messages
    assert mail.logins == [(sender, password)]
    assert (received.login, received.password) == (sender, password)
    assert received.mail_from == sender
    assert received.rcpt_tos == ["ops@example.com", "books@example.com"]
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    run_id = failed_run.run.run_id
    assert message["From"] == sender
    assert [address.addr_spec for address in message["To"].addresses] == received.rcpt_tos
    assert message["Subject"] == f"[book_pipeline] fetch_data failed: run {run_id}"
    body = message.get_content()
    assert f"Dagster job fetch_data failed: run {run_id}" in body
    step_key, file, line = expected_step(failed_run)
    assert f"- {step_key} (file {file}, line {line}): broken file.txt, line 3: expected" in body
    assert password not in received.content.decode()
    logged = records.messages() + [record.getMessage() for record in caplog.records]
    assert not any(password in message for message in logged)
