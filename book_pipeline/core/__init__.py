"""The Dagster-free core: parsing, the books folder, the ledger, embedding, the Qdrant stores.

Nothing here imports Dagster; the Dagster definitions (`book_pipeline.defs`) and the CLI
(`book_pipeline.cli`) are both built on it.
"""
