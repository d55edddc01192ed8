"""Alerts when a run of this code location fails.

Always one structured (JSON) log line from the sensor; when configured, a POST of a JSON message
to a Slack-compatible webhook (`BOOK_PIPELINE_ALERT_WEBHOOK_URL`) and an email through Dagster's
own `make_email_on_run_failure_sensor` (`BOOK_PIPELINE_ALERT_EMAIL_TO` and the SMTP variables).
The alert names the job, the run, the failed steps with their errors and, for a bad file, the
file and the line.

The webhook URL carries a token, so it is never logged (only its host), and a webhook that is
down or refuses the message is logged as an error, never raised: the sensor goes on.
"""

import html
import json
import logging
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from book_pipeline.core.settings import SMTP_SSL_PORT, VARIABLES, Settings

ALERT_SENSOR_NAME = "book_pipeline_failure_alerts"
EMAIL_SENSOR_NAME = "book_pipeline_failure_email"
WEBHOOK_TIMEOUT_SECONDS = 10.0
# A run with hundreds of failed copies still makes a message a person reads.
_LISTED_STEPS_LIMIT = 20
_ERROR_CHARS_LIMIT = 500
# Dagster's errors around the user's: the step's retries ran out, user code raised.
_DAGSTER_WRAPPERS = frozenset(
    {"RetryRequestedFromPolicy", "RetryRequested", "DagsterExecutionStepExecutionError"}
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedStep:
    step_key: str
    error: str
    file: str | None = None
    line: int | None = None

    def describe(self) -> str:
        where = ""
        if self.file:
            where = f" (file {self.file}" + (f", line {self.line}" if self.line else "") + ")"
        return f"{self.step_key}{where}: {self.error}"


@dataclass(frozen=True)
class RunFailureAlert:
    job_name: str
    run_id: str
    failed_steps: tuple[FailedStep, ...]
    run_error: str | None

    @property
    def text(self) -> str:
        lines = [f"Dagster job {self.job_name} failed: run {self.run_id}"]
        if self.failed_steps:
            count = len(self.failed_steps)
            lines.append(f"{count} failed step{'s' if count > 1 else ''}:")
            lines += [f"- {step.describe()}" for step in self.failed_steps[:_LISTED_STEPS_LIMIT]]
            if count > _LISTED_STEPS_LIMIT:
                lines.append(f"- and {count - _LISTED_STEPS_LIMIT} more")
        elif self.run_error:
            lines.append(self.run_error)
        return "\n".join(lines)

    def fields(self) -> dict[str, Any]:
        """The alert as data: what the log line and the webhook's JSON carry besides the text."""
        return {
            "job_name": self.job_name,
            "run_id": self.run_id,
            "failed_steps": [asdict(step) for step in self.failed_steps],
            "run_error": self.run_error,
        }

    def payload(self) -> dict[str, Any]:
        """Slack-compatible: `text` is the message; the other fields are for machines."""
        return {"text": self.text, **self.fields()}


def _first_line(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= _ERROR_CHARS_LIMIT else line[: _ERROR_CHARS_LIMIT - 3] + "..."


def _error_text(error: Any) -> str:
    """The user's error inside Dagster's wrappers ("Exceeded max_retries of 3" and the like),
    without the module path: "EmbeddingEndpointError: the embedding endpoint ... ".
    """
    first = error
    while error is not None:
        wrapper = error.cls_name in _DAGSTER_WRAPPERS or error.message.startswith("dagster.")
        if not wrapper:
            message = _first_line(error.message)
            prefix, separator, rest = message.partition(": ")
            if separator and "." in prefix and " " not in prefix:
                message = f"{prefix.rsplit('.', 1)[-1]}: {rest}"
            return message
        error = error.cause
    return _first_line(first.message) if first is not None else "unknown error"


def failed_step(event: dg.DagsterEvent) -> FailedStep:
    """One STEP_FAILURE event as the alert shows it; a bad file's Failure names file and line."""
    data = event.step_failure_data
    user_data = data.user_failure_data
    metadata: Mapping[str, Any] = user_data.metadata if user_data else {}
    if user_data and user_data.description:
        error = _first_line(user_data.description)
    elif data.error is not None:
        error = _error_text(data.error)
    else:
        error = "unknown error"
    file_value = metadata.get("file")
    line_value = metadata.get("line")
    # The transform op writes line 0 when the problem is the whole file, not one line.
    line = int(line_value.value) if line_value is not None else 0
    return FailedStep(
        step_key=event.step_key or "?",
        error=error,
        file=str(file_value.value) if file_value is not None else None,
        line=line or None,
    )


def build_alert(
    run: dg.DagsterRun,
    step_failures: Sequence[dg.DagsterEvent],
    run_failure: dg.DagsterEvent | None = None,
) -> RunFailureAlert:
    """The alert for a failed run, from its step failure events (and the run's failure event,
    which explains a run that failed outside any step)."""
    return RunFailureAlert(
        job_name=run.job_name,
        run_id=run.run_id,
        failed_steps=tuple(failed_step(event) for event in step_failures),
        run_error=_first_line(run_failure.message) if run_failure and run_failure.message else None,
    )


def step_failure_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterEvent]:
    """The run's STEP_FAILURE events, from the instance's event log."""
    events = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        if entry.dagster_event is not None:
            events.append(entry.dagster_event)
    return events


def alert_for_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, run_failure: dg.DagsterEvent | None = None
) -> RunFailureAlert:
    return build_alert(run, step_failure_events(instance, run.run_id), run_failure)


def webhook_host(url: str) -> str:
    """What may be logged of a webhook URL: its host. The path holds the token."""
    return urlsplit(url).hostname or "?"


def post_alert(url: str, alert: RunFailureAlert, timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> int:
    """POST the alert's JSON to the webhook; its HTTP status, or an exception (not logged here)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{VARIABLES.alert_webhook_url.name} must be an http(s) URL")
    request = urllib.request.Request(
        url,
        data=json.dumps(alert.payload()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def _safe_error(error: Exception, url: str) -> str:
    """An exception as text, with the URL (and its token) cut out should it appear."""
    text = f"{type(error).__name__}: {error}"
    for secret in {url, urlsplit(url).path, urlsplit(url).query}:
        if len(secret) > 1:
            text = text.replace(secret, "<redacted>")
    return text


def alert_log_line(alert: RunFailureAlert) -> str:
    """One JSON line, for log search: {"alert": "run_failure", "job_name": ..., ...}."""
    return json.dumps({"alert": "run_failure", **alert.fields()}, sort_keys=True)


def is_this_code_locations_run(context: dg.RunFailureSensorContext) -> bool:
    """A run of one of this code location's jobs, however it was started.

    A run started by `dagster job execute` has no code location of record, so a failure sensor
    that watches its own code location only never sees it: the sensors watch every location,
    and this keeps the alerts to the runs of this one's jobs.
    """
    repository = context.repository_def
    return repository is None or repository.has_job(context.dagster_run.job_name)


@dg.run_failure_sensor(
    name=ALERT_SENSOR_NAME,
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
    description="Every failed run of this code location, started from the UI, a sensor or the "
    f"command line: a JSON log line, and a POST to the webhook in "
    f"{VARIABLES.alert_webhook_url.name} when it is set.",
)
def book_pipeline_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    if not is_this_code_locations_run(context):
        return
    alert = build_alert(
        context.dagster_run, context.get_step_failure_events(), context.failure_event
    )
    context.log.error(alert_log_line(alert))
    url = VARIABLES.alert_webhook_url.read()
    if not url:
        return
    host = webhook_host(url)
    try:
        status = post_alert(url, alert)
    except Exception as error:  # an alert channel that is down must not stop the sensor
        context.log.error(f"alert webhook at {host} failed: {_safe_error(error, url)}")
    else:
        context.log.info(f"alert for run {alert.run_id} posted to the webhook at {host} ({status})")


def _email_body(context: dg.RunFailureSensorContext) -> str:
    alert = build_alert(
        context.dagster_run, context.get_step_failure_events(), context.failure_event
    )
    return "<br>".join(html.escape(line) for line in alert.text.splitlines())


def _email_subject(context: dg.RunFailureSensorContext) -> str:
    run = context.dagster_run
    return f"[book_pipeline] {run.job_name} failed: run {run.run_id}"


def email_alert_sensor(environ: Mapping[str, str] | None = None) -> dg.SensorDefinition | None:
    """Dagster's email-on-failure sensor, when `BOOK_PIPELINE_ALERT_EMAIL_TO` (comma-separated)
    and the sender and SMTP variables are set (in `environ` when given); the password is read
    from the environment only."""
    settings = Settings.from_environment(environ)
    if not settings.alert_email_to:
        return None
    required = (
        (VARIABLES.alert_email_from, settings.alert_email_from),
        (VARIABLES.alert_smtp_host, settings.alert_smtp_host),
        (VARIABLES.alert_smtp_password, settings.alert_smtp_password),
    )
    missing = [variable.name for variable, value in required if not value]
    if missing:
        logger.warning(
            f"{VARIABLES.alert_email_to.name} is set but {', '.join(missing)} not: no email alerts"
        )
        return None
    port = settings.alert_smtp_port
    return dg.make_email_on_run_failure_sensor(
        email_from=settings.alert_email_from,
        email_password=settings.alert_smtp_password,
        email_to=list(settings.alert_email_to),
        email_body_fn=_email_body,
        email_subject_fn=_email_subject,
        smtp_host=settings.alert_smtp_host,
        smtp_type="SSL" if port == SMTP_SSL_PORT else "STARTTLS",
        smtp_port=port,
        name=EMAIL_SENSOR_NAME,
        # As the alert sensor, to see the runs started from the command line; Dagster's email
        # sensor takes no filter, so it mails every failed run of the instance (a deployment of
        # this project has one code location).
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


def alert_sensors() -> list[dg.SensorDefinition]:
    """The failure sensors for the code location: the alert sensor, and email when configured."""
    email = email_alert_sensor()
    return [book_pipeline_failure_alerts, *([email] if email else [])]
