"""The lesson's toy for dynamic task mapping, as the job `simple_mapping`.

Names follow the Airflow lesson's `simple_mapping` DAG:

- `get_numbers` picks, at random, an empty list or a list of 1, 2 or 3 integers and yields one
  `DynamicOutput` per element (Airflow: the task whose return value is expanded over);
- `mapped_task_one(my_constant_arg, my_changing_arg)` adds them. `my_constant_arg` is op config,
  so it is set once and every copy sees the same value (Airflow: `.partial()`); `my_changing_arg`
  is the mapped input, one copy per number (Airflow: `.expand()`);
- `mapped_task_two(my_cookie_number)` is mapped over `mapped_task_one`'s outputs, so it always has
  exactly as many copies, with the same mapping keys.

An empty list maps no copy of either op, and the run still succeeds.
"""

import random

import dagster as dg
from pydantic import Field

# The lesson's lists have 0, 1, 2 or 3 elements.
POSSIBLE_LENGTHS = (0, 1, 2, 3)
SMALLEST_NUMBER = 1
LARGEST_NUMBER = 100


class GetNumbersConfig(dg.Config):
    seed: int | None = Field(
        default=None,
        description="Seed for the random choice; the same seed gives the same list. Unset: a "
        "fresh seed, written to the run's log so the run can be replayed.",
    )
    count: int | None = Field(
        default=None,
        ge=0,
        le=3,
        description="Force the list's length (0 to 3) instead of choosing it at random; the "
        "numbers themselves still come from the seed.",
    )


class MappedTaskOneConfig(dg.Config):
    my_constant_arg: int = Field(
        default=10,
        description="Added to every number; set once, the same for every mapped copy.",
    )


def choose_numbers(seed: int, count: int | None = None) -> list[int]:
    """The lesson's random list: the length first (0 to 3), then that many random integers.

    The length is always drawn, even when `count` overrides it, so for one seed the numbers are
    the same stream whatever `count` is: forcing the length the seed would have chosen gives the
    very list an unforced run gets.
    """
    rng = random.Random(seed)
    length = rng.choice(POSSIBLE_LENGTHS)
    if count is not None:
        length = count
    return [rng.randint(SMALLEST_NUMBER, LARGEST_NUMBER) for _ in range(length)]


def mapping_key_for_index(index: int) -> str:
    return f"number_{index}"


@dg.op(out=dg.DynamicOut(int))
def get_numbers(context: dg.OpExecutionContext, config: GetNumbersConfig):
    """One dynamic output per number, keyed `number_0`, `number_1`, ...; none for an empty list."""
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    numbers = choose_numbers(seed, config.count)
    context.log.info(
        f"numbers: {numbers} (seed {seed}; run with `seed: {seed}` in this op's config to "
        "get the same list again)"
    )
    for index, number in enumerate(numbers):
        yield dg.DynamicOutput(number, mapping_key=mapping_key_for_index(index))


@dg.op
def mapped_task_one(
    context: dg.OpExecutionContext, config: MappedTaskOneConfig, my_changing_arg: int
) -> int:
    """One copy per number: the constant (from config, shared by all copies) plus this number."""
    total = config.my_constant_arg + my_changing_arg
    context.log.info(f"{config.my_constant_arg} + {my_changing_arg} = {total}")
    return total


@dg.op
def mapped_task_two(context: dg.OpExecutionContext, my_cookie_number: int) -> str:
    """One copy per output of mapped_task_one, under the same mapping key."""
    cookie = f"cookie {my_cookie_number}"
    context.log.info(cookie)
    return cookie


# In process: each step is an addition or a string, while one process per step (Dagster's
# default executor) costs far more to start than the step's work; see defs/executors.py.
@dg.job(
    executor_def=dg.in_process_executor,
    description="The lesson's dynamic-mapping toy: 0 to 3 random numbers, two mapped ops.",
)
def simple_mapping():
    sums = get_numbers().map(mapped_task_one)
    sums.map(mapped_task_two)
