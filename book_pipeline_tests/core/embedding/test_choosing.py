"""The one function that picks the embedder a configuration names."""

from pathlib import Path

from book_pipeline.core.embedding.bundled import LOCAL_MODEL_NAME
from book_pipeline.core.embedding.choosing import choose_embedder
from book_pipeline.core.embedding.local import FastEmbedEmbedder
from book_pipeline.core.embedding.openai_endpoint import OpenAIEmbedder
from book_pipeline.core.embedding.query import BundledQueryEmbedder
from book_pipeline.core.settings import Settings
from book_pipeline_tests.support.embedders import sentence_transformers_folder


def test_only_the_bundled_default_skips_fastembed(tmp_path: Path) -> None:
    assert isinstance(
        choose_embedder(Settings().embedder_choice, for_query=True), BundledQueryEmbedder
    )
    assert isinstance(
        choose_embedder(Settings(embedding_model=LOCAL_MODEL_NAME).embedder_choice, for_query=True),
        BundledQueryEmbedder,
    )

    folder = sentence_transformers_folder(tmp_path / "minilm-copy")
    from_folder = choose_embedder(
        Settings(embedding_model=str(folder)).embedder_choice, for_query=True
    )
    assert isinstance(from_folder, FastEmbedEmbedder)
    assert from_folder.model_name.startswith("minilm-copy@sha256:")

    remote = choose_embedder(
        Settings(embedder="openai", openai_api_key="sk-test").embedder_choice, for_query=True
    )
    assert isinstance(remote, OpenAIEmbedder)
