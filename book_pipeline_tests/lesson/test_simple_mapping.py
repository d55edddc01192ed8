"""The simple_mapping job, run for real with Dagster: one copy of each mapped op per number."""

from collections import Counter

import dagster as dg
import pytest

from book_pipeline.lesson.simple_mapping import POSSIBLE_LENGTHS, choose_numbers, simple_mapping

SEED = 7  # Chooses [20, 51] when the length is not forced.


def run_simple_mapping(
    *,
    seed: int | None = SEED,
    count: int | None = None,
    my_constant_arg: int | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    get_numbers_config: dict = {"seed": seed}
    if count is not None:
        get_numbers_config["count"] = count
    ops: dict = {"get_numbers": {"config": get_numbers_config}}
    if my_constant_arg is not None:
        ops["mapped_task_one"] = {"config": {"my_constant_arg": my_constant_arg}}
    return simple_mapping.execute_in_process(run_config={"ops": ops}, raise_on_error=raise_on_error)


def op_name(step_key: str) -> str:
    return step_key.split("[")[0]


def step_keys(result: dg.ExecuteInProcessResult, event_type: dg.DagsterEventType) -> list[str]:
    return [
        event.step_key
        for event in result.all_events
        if event.event_type == event_type and event.step_key is not None
    ]


def successes_per_op(result: dg.ExecuteInProcessResult) -> Counter:
    return Counter(op_name(key) for key in step_keys(result, dg.DagsterEventType.STEP_SUCCESS))


def numbers_of(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    """get_numbers' dynamic outputs, by mapping key ({} when it yielded none)."""
    try:
        return result.output_for_node("get_numbers")
    except dg.DagsterInvariantViolationError:  # No output at all: the empty list.
        return {}


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_one_copy_of_each_mapped_op_per_number(count):
    result = run_simple_mapping(count=count)

    assert result.success
    successes = successes_per_op(result)
    assert successes["get_numbers"] == 1
    assert successes["mapped_task_one"] == successes["mapped_task_two"] == count
    expected_keys = [f"number_{index}" for index in range(count)]
    assert sorted(
        key for key in step_keys(result, dg.DagsterEventType.STEP_SUCCESS) if "[" in key
    ) == sorted(
        [f"mapped_task_one[{key}]" for key in expected_keys]
        + [f"mapped_task_two[{key}]" for key in expected_keys]
    )

    numbers = numbers_of(result)
    assert sorted(numbers) == expected_keys
    assert list(numbers.values()) == choose_numbers(SEED, count)
    if count == 0:
        return
    sums = result.output_for_node("mapped_task_one")
    cookies = result.output_for_node("mapped_task_two")
    assert sums == {key: 10 + number for key, number in numbers.items()}
    assert cookies == {key: f"cookie {total}" for key, total in sums.items()}


def test_empty_list_runs_no_copy_and_succeeds():
    result = run_simple_mapping(count=0)

    assert result.success
    # Not skipped copies: no step of either mapped op exists at all.
    assert not [
        event
        for event in result.all_events
        if event.step_key is not None and op_name(event.step_key) != "get_numbers"
    ]
    with pytest.raises(dg.DagsterInvariantViolationError):
        result.output_for_node("mapped_task_one")


def test_same_seed_same_list():
    first = numbers_of(run_simple_mapping(seed=SEED))
    second = numbers_of(run_simple_mapping(seed=SEED))

    assert first == second == {"number_0": 20, "number_1": 51}
    assert choose_numbers(SEED) == [20, 51]


def test_forcing_the_length_the_seed_chooses_gives_the_same_list():
    for seed in range(50):
        numbers = choose_numbers(seed)
        assert choose_numbers(seed, count=len(numbers)) == numbers
        # Whatever the length, the numbers come from the same stream.
        assert choose_numbers(seed, count=3)[: len(numbers)] == numbers


def test_random_choice_covers_every_length_with_numbers_in_range():
    lengths = Counter()
    for seed in range(200):
        numbers = choose_numbers(seed)
        lengths[len(numbers)] += 1
        assert all(1 <= number <= 100 for number in numbers)
    assert set(lengths) == set(POSSIBLE_LENGTHS)


def test_without_a_seed_the_run_still_works():
    result = run_simple_mapping(seed=None)

    assert result.success
    counts = successes_per_op(result)
    assert counts["mapped_task_one"] == counts["mapped_task_two"] == len(numbers_of(result))


def test_my_constant_arg_is_shared_by_every_copy():
    result = run_simple_mapping(count=3, my_constant_arg=1000)

    numbers = numbers_of(result)
    assert result.output_for_node("mapped_task_one") == {
        key: 1000 + number for key, number in numbers.items()
    }
    assert result.output_for_node("mapped_task_two") == {
        key: f"cookie {1000 + number}" for key, number in numbers.items()
    }


@pytest.mark.parametrize("count", [-1, 4])
def test_count_outside_0_to_3_fails_get_numbers(count):
    result = run_simple_mapping(count=count, raise_on_error=False)

    assert not result.success
    assert step_keys(result, dg.DagsterEventType.STEP_FAILURE) == ["get_numbers"]
    assert not step_keys(result, dg.DagsterEventType.STEP_SUCCESS)
