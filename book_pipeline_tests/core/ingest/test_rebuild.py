"""Where runs load after a change of model, the switch rules, and the embedder of a version's
queries (the runs themselves: defs/test_model_switch.py)."""

from pathlib import Path

import pytest

from book_pipeline.core.embedding.bundled import LOCAL_MODEL_NAME
from book_pipeline.core.ingest.rebuild import (
    plan_versions,
    switch_allowed,
    version_embedder_choice,
)
from book_pipeline.core.settings import EmbedderChoice
from book_pipeline.core.store.opening import open_store_versions
from book_pipeline.core.store.versions import EmbedderRecord, VersionRecord

CONFIGURED = EmbedderChoice("openai", "text-embedding-3-large", Path("models"), api_key="sk")


def test_the_switch_rules() -> None:
    assert switch_allowed("at-least-as-many", old_found=5, new_found=5, new_probes=6)
    assert not switch_allowed("at-least-as-many", old_found=5, new_found=4, new_probes=6)
    assert not switch_allowed("every-probe", old_found=0, new_found=5, new_probes=6)
    assert switch_allowed("every-probe", old_found=6, new_found=6, new_probes=6)
    assert not switch_allowed("manual", old_found=0, new_found=6, new_probes=6)
    with pytest.raises(ValueError, match="unknown switch rule"):
        switch_allowed("always", 0, 0, 0)


def test_a_version_is_searched_with_the_embedder_it_recorded_or_one_its_model_names() -> None:
    recorded = VersionRecord(EmbedderRecord("openai", "text-embedding-3-small", 256))
    choice = version_embedder_choice(recorded, "text-embedding-3-small", CONFIGURED, "x")
    assert choice is not None
    assert (choice.provider, choice.model, choice.dimensions, choice.api_key) == (
        "openai",
        "text-embedding-3-small",
        256,
        "sk",
    )
    unrecorded = VersionRecord()
    same = version_embedder_choice(
        unrecorded, "text-embedding-3-large", CONFIGURED, "text-embedding-3-large"
    )
    assert same == CONFIGURED
    bundled = version_embedder_choice(unrecorded, LOCAL_MODEL_NAME, CONFIGURED, "other")
    assert bundled is not None and (bundled.provider, bundled.model) == ("local", None)
    openai = version_embedder_choice(unrecorded, "text-embedding-ada-002", CONFIGURED, "other")
    assert openai is not None and (openai.provider, openai.model) == (
        "openai",
        "text-embedding-ada-002",
    )
    assert version_embedder_choice(unrecorded, "someone/else", CONFIGURED, "other") is None


def test_runs_load_into_the_configured_models_version_unless_it_was_rolled_back(
    tmp_path: Path,
) -> None:
    with open_store_versions("books", tmp_path / "edge") as catalog:
        assert plan_versions(catalog, "model-a").target == "books"  # nothing yet
        catalog.open("books").ensure_collection(4, "model-a")
        same = plan_versions(catalog, "model-a")
        assert (same.current, same.target, same.rebuilding) == ("books", "books", False)
        changed = plan_versions(catalog, "model-b")
        assert (changed.target, changed.rebuilding) == ("books__v2", True)
        catalog.open("books__v2").ensure_collection(8, "model-b")
        assert plan_versions(catalog, "model-b").target == "books__v2"
        catalog.switch("books__v2")
        catalog.switch("books", rolled_back="books__v2")
        rolled_back = plan_versions(catalog, "model-b")
        assert rolled_back.target is None and "rolled back" in rolled_back.describe()
