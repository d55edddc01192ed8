"""Step retries for the steps that talk to other systems: the embedding endpoint and Qdrant.

The openai client already retries a 429 or a 5xx a couple of times within a second or two; a
step retry is the second layer, for outages that last longer. Dagster retries the failed step
alone (STEP_UP_FOR_RETRY, then STEP_RESTARTED in the run's log), with exponential backoff and
jitter: with the defaults it waits about 2, 6 and 14 seconds, each give or take 2.

Errors that cannot heal are raised as `dg.Failure(allow_retries=False)` and are not retried: a
malformed file, a collection made by another model, a 4xx other than 408, 409 and 429.

Read once, when the code location loads (the policy is part of the op definitions).
"""

import os
from collections.abc import Mapping

import dagster as dg

STEP_RETRIES_VARIABLE = "BOOK_PIPELINE_STEP_RETRIES"
RETRY_DELAY_VARIABLE = "BOOK_PIPELINE_RETRY_DELAY_SECONDS"
DEFAULT_STEP_RETRIES = 3
DEFAULT_RETRY_DELAY_SECONDS = 2.0


def _number(environ: Mapping[str, str], name: str, default: float, kind: type) -> float:
    raw = environ.get(name) or ""
    if not raw.strip():
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be a non-negative {kind.__name__}, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be a non-negative {kind.__name__}, not {raw!r}")
    return value


def external_step_retry_policy(environ: Mapping[str, str] = os.environ) -> dg.RetryPolicy:
    """The retry policy of the embed and load steps, from `BOOK_PIPELINE_STEP_RETRIES` and
    `BOOK_PIPELINE_RETRY_DELAY_SECONDS`; 0 retries turns step retries off."""
    return dg.RetryPolicy(
        max_retries=int(_number(environ, STEP_RETRIES_VARIABLE, DEFAULT_STEP_RETRIES, int)),
        delay=_number(environ, RETRY_DELAY_VARIABLE, DEFAULT_RETRY_DELAY_SECONDS, float),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


EXTERNAL_STEP_RETRY_POLICY = external_step_retry_policy()
