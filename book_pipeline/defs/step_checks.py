"""The checks fetch_data's graph reports from its own steps, beside `retrieval_sanity`
(defs/checks.py): every file accepted, every removal confirmed. Each step passes its check, or
fails on a red step of its own so the run fails and its alerts fire while the load goes through.
"""

import dagster as dg

from book_pipeline.core.ingest.removal_guard import HeldRemoval

# The asset checks of book_embeddings, named by the ops that report them (defs/assets.py).
EVERY_FILE_ACCEPTED_CHECK = "every_file_accepted"
EVERY_REMOVAL_CONFIRMED_CHECK = "every_removal_confirmed"
# The step's metadata lists at most this many file names; the count is always complete.
_LISTED_FILES_LIMIT = 100


# No return annotation: Dagster would type-check the check's output, which it stores as None.
@dg.op(ins={"refused": dg.In(dg.Nothing), "over_budget": dg.In(dg.Nothing)})
def check_every_file_accepted():
    """Reached only when no copy was refused, nor held back by the token budget: those steps
    fail, and Dagster runs nothing after a failed step. Dagster asks for it too: every step of a
    graph-backed asset must lead to the asset or one of its checks, and the refusal steps
    cannot lead to the load."""
    return dg.AssetCheckResult(
        check_name=EVERY_FILE_ACCEPTED_CHECK,
        passed=True,
        description="no file of this run was refused or held back by the budget",
    )


@dg.op
def check_removals_confirmed(removal_hold: HeldRemoval | None):
    """Fails, on its own red step, when the load held removals back: the run fails (its alerts
    fire) while the load itself went through. Not retried: only the user can confirm."""
    if removal_hold is None:
        return dg.AssetCheckResult(
            check_name=EVERY_REMOVAL_CONFIRMED_CHECK,
            passed=True,
            description="every file that left the books folder had its books removed",
        )
    raise dg.Failure(
        description=removal_hold.describe(),
        metadata={
            "books_folder": dg.MetadataValue.path(str(removal_hold.folder)),
            "files_held": len(removal_hold.files),
            "removal_limit": removal_hold.limit,
            "files": dg.MetadataValue.json(removal_hold.files[:_LISTED_FILES_LIMIT]),
        },
        allow_retries=False,
    )
