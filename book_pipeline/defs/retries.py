"""Step retries for the steps that talk to other systems: the embedding endpoint and Qdrant.

The openai client already retries a 429 or a 5xx a couple of times within a second or two; a
step retry is the second layer, for outages that last longer. Dagster retries the failed step
alone (STEP_UP_FOR_RETRY, then STEP_RESTARTED in the run's log), with exponential backoff and
jitter: with the defaults it waits about 2, 6 and 14 seconds, each give or take 2.

Errors that cannot heal are raised as `dg.Failure(allow_retries=False)` and are not retried: a
malformed file, a collection made by another model, a 4xx other than 408, 409 and 429.

Read once, when the code location loads (the policy is part of the op definitions).
"""

from collections.abc import Mapping

import dagster as dg

from book_pipeline.core.settings import Settings


def external_step_retry_policy(environ: Mapping[str, str] | None = None) -> dg.RetryPolicy:
    """The retry policy of the embed and load steps, from `BOOK_PIPELINE_STEP_RETRIES` and
    `BOOK_PIPELINE_RETRY_DELAY_SECONDS` (of `environ` when given); 0 retries turns step retries
    off."""
    settings = Settings.from_environment(environ)
    return dg.RetryPolicy(
        max_retries=settings.step_retries,
        delay=settings.retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


EXTERNAL_STEP_RETRY_POLICY = external_step_retry_policy()
