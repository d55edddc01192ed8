"""Fail points: places where a test makes the process die as a kill or a power cut would.

A crash test arms one by name in the environment of the process it starts
(`BOOK_PIPELINE_FAIL_POINT=load:after_first_batch`), so the process dies exactly there, not
wherever a sleep happens to end. Unarmed, a fail point is one dictionary lookup.
"""

import os
import signal

from book_pipeline.core.settings import VARIABLES

# An embed step is about to ask the model for vectors: the run dies in the middle of embedding.
BEFORE_EMBEDDING = "embed:before_request"
# The load has written some of its points, not all.
AFTER_FIRST_BATCH = "load:after_first_batch"
# The load's points are durable in the store, the ledger does not record them yet.
BEFORE_RECORDING_THE_LOAD = "load:before_recording"
# A version switch has written the versions' records, not yet the pointer (or alias) itself.
IN_THE_MIDDLE_OF_THE_SWITCH = "versions:in_the_middle_of_the_switch"


def fail_point(name: str) -> None:
    """Die here, at once and without cleanup (SIGKILL), when a test armed this point."""
    if VARIABLES.fail_point.read() == name:
        os.kill(os.getpid(), signal.SIGKILL)
