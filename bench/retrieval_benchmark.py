"""Search quality on a public collection in BEIR's layout: NDCG@10 and recall@100 per mode.

    python bench/retrieval_benchmark.py --data DIR --split train [--modes dense,keyword,hybrid]
        [--json] [--cache-dir DIR] [--bm25s]

DIR holds corpus.jsonl (_id, title, text), queries.jsonl (_id, text) and qrels/SPLIT.tsv (a
header line, then query-id, corpus-id and score, tab-separated), as BEIR distributes them.

Each document becomes a book as a load makes one: title = its title, description = its text,
author empty and year 2000 (a BEIR document has neither; no search here filters by them),
source file "corpus.jsonl", index = its position there (how a hit is traced back to its _id).
The books are embedded with the configured model (the bundled one by default) and stored by
`upsert_books` in a new Qdrant Edge store in a temporary folder, each with its dense and its
keyword vector. Every query that has judgements in the split is answered by `search_books`, the
function `book-pipeline search` calls, with the embedder that command uses, 100 hits per mode.

Scores are pytrec_eval's (as BEIR reports them): NDCG@10 with the judgement's grade as the gain,
1/log2(rank + 1) as the discount and the query's own judgements, best first, as the ideal; and
recall@100, the share of the query's documents graded 1 or more found in the 100 hits. Both are
averaged over the judged queries; a judged document missing from the corpus is never found. The
ranking is the order the search returns; pytrec_eval would reorder exact ties by document id.
p50_ms is the median time of one `search_books` call, the query's embedding included; the modes
take turns query by query, so a busy moment of the machine hits them all.

`--bm25s` also scores bm25s's BM25 (lucene variant, k1 1.5, b 0.75, English stop words, Snowball
stemming; `pip install -e .[dev]`) on the same texts, a reference for the keyword mode.

`--fusions dbsf,rrf:2,rrf:60,rrf:2:0.75` also scores hybrid search with other fusions of the same
two candidate lists (`HybridFusion`: DBSF, or RRF with its k and, optionally, the dense side's
weight), the query embedded once for all of them: how the default fusion was chosen, on train
(docs/search.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from book_pipeline.core.books.parsing import BookRecord
from book_pipeline.core.embedding.base import Embedder
from book_pipeline.core.embedding.choosing import choose_embedder
from book_pipeline.core.search import search_books
from book_pipeline.core.settings import Settings
from book_pipeline.core.store.base import SEARCH_MODES, HybridFusion
from book_pipeline.core.store.keyword_vectors import keyword_text, query_keyword_vector
from book_pipeline.core.store.opening import open_vector_store

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
DOCUMENT_AUTHOR = ""
DOCUMENT_YEAR = 2000
HITS_PER_QUERY = 100
NDCG_DEPTH = 10
# Documents embedded per call: often enough to show progress, large enough to batch well.
EMBED_CHUNK = 512
PROGRESS_EVERY = 100
DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "book_pipeline"
    / "retrieval_benchmark"
)


class BenchmarkInputError(ValueError):
    """A file of the collection cannot be read as BEIR's layout; the message names file and line."""


@dataclass(frozen=True)
class Collection:
    doc_ids: list[str]
    books: list[BookRecord]
    corpus_sha256: str
    # Only the judged queries: query id -> text, and query id -> {document id: grade}.
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class ModeResult:
    ndcg: float
    recall: float
    p50_ms: float


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                raise BenchmarkInputError(
                    f"{path}:{line_number}: not JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise BenchmarkInputError(f"{path}:{line_number}: expected a JSON object")
            yield line_number, record


def text_field(record: dict[str, Any], name: str, path: Path, line_number: int) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise BenchmarkInputError(
            f"{path}:{line_number}: expected a string field {name!r}, found {value!r}"
        )
    return value


def unique_id(record: dict[str, Any], path: Path, line_number: int, seen: dict[str, int]) -> str:
    # BEIR's ids are strings, but some exports write numbers; both name the same document.
    raw = record.get("_id")
    if not isinstance(raw, str | int) or isinstance(raw, bool) or str(raw) == "":
        raise BenchmarkInputError(f"{path}:{line_number}: expected an '_id', found {raw!r}")
    identifier = str(raw)
    if identifier in seen:
        raise BenchmarkInputError(
            f"{path}:{line_number}: _id {identifier!r} is already used on line {seen[identifier]}"
        )
    seen[identifier] = line_number
    return identifier


def read_corpus(path: Path) -> tuple[list[str], list[BookRecord]]:
    doc_ids: list[str] = []
    books: list[BookRecord] = []
    seen: dict[str, int] = {}
    for line_number, record in json_lines(path):
        doc_ids.append(unique_id(record, path, line_number, seen))
        books.append(
            BookRecord(
                index=len(books),
                title=text_field(record, "title", path, line_number) if "title" in record else "",
                year=DOCUMENT_YEAR,
                author=DOCUMENT_AUTHOR,
                description=text_field(record, "text", path, line_number),
                source_file=CORPUS_FILE,
                line_number=line_number,
            )
        )
    if not books:
        raise BenchmarkInputError(f"{path}: no documents")
    return doc_ids, books


def read_queries(path: Path) -> dict[str, str]:
    seen: dict[str, int] = {}
    return {
        unique_id(record, path, line_number, seen): text_field(record, "text", path, line_number)
        for line_number, record in json_lines(path)
    }


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if line_number == 1:
                if len(fields) == 3 and fields[2].lstrip("-").isdigit():
                    raise BenchmarkInputError(
                        f"{path}:1: expected the header line 'query-id<TAB>corpus-id<TAB>score', "
                        f"found a judgement: {line.strip()!r}"
                    )
                continue
            if not line.strip():
                continue
            if len(fields) != 3 or not fields[2].lstrip("-").isdigit():
                raise BenchmarkInputError(
                    f"{path}:{line_number}: expected query-id, corpus-id and an integer score "
                    f"separated by tabs, found {line.strip()!r}"
                )
            query_id, doc_id, grade = fields
            qrels.setdefault(query_id, {})[doc_id] = int(grade)
    if not qrels:
        raise BenchmarkInputError(f"{path}: no judgements")
    return qrels


def read_collection(data: Path, split: str) -> Collection:
    corpus_path = data / CORPUS_FILE
    queries_path = data / QUERIES_FILE
    qrels_path = data / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path):
        if not path.is_file():
            raise BenchmarkInputError(f"{path}: no such file (expected BEIR's layout in {data})")
    doc_ids, books = read_corpus(corpus_path)
    queries = read_queries(queries_path)
    qrels = read_qrels(qrels_path)
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise BenchmarkInputError(
            f"{qrels_path} judges queries that {queries_path} does not hold "
            f"({len(unknown)}, e.g. {', '.join(unknown[:5])})"
        )
    with corpus_path.open("rb") as file:
        corpus_sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    return Collection(
        doc_ids=doc_ids,
        books=books,
        corpus_sha256=corpus_sha256,
        queries={query_id: text for query_id, text in queries.items() if query_id in qrels},
        qrels=qrels,
    )


def cache_file(cache_dir: Path, model_name: str, texts: Sequence[str]) -> Path:
    """Named by the model and the very texts embedded, so a changed corpus, model or way of
    making a book's text never reads stale vectors."""
    digest = hashlib.sha256(model_name.encode())
    for text in texts:
        digest.update(b"\x00" + text.encode())
    return cache_dir / f"{digest.hexdigest()[:24]}.npy"


def corpus_vectors(books: Sequence[BookRecord], embedder: Embedder, cache_dir: Path) -> np.ndarray:
    """The books' dense vectors as a load makes them (`embedding_text`), from the cache when
    this model has embedded these texts before."""
    texts = [book.embedding_text for book in books]
    cached = cache_file(cache_dir, embedder.model_name, texts)
    if cached.is_file():
        vectors = np.load(cached)
        if vectors.shape == (len(texts), embedder.dimension):
            say(f"corpus vectors from {cached}")
            return vectors
        say(f"ignoring {cached}: shape {vectors.shape}, expected {len(texts)} rows")
    chunks = []
    for start in range(0, len(texts), EMBED_CHUNK):
        chunks.append(embedder.embed(texts[start : start + EMBED_CHUNK]))
        say(f"embedded {min(start + EMBED_CHUNK, len(texts))}/{len(texts)} documents")
    vectors = np.vstack(chunks)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written whole under another name first: an interrupted run leaves no truncated cache.
    partial = cached.with_suffix(".partial.npy")
    np.save(partial, vectors)
    partial.replace(cached)
    say(f"corpus vectors cached in {cached}")
    return vectors


def ndcg_at(ranked: Sequence[str], grades: dict[str, int], depth: int = NDCG_DEPTH) -> float:
    gain = sum(
        grades.get(doc_id, 0) / math.log2(rank + 1)
        for rank, doc_id in enumerate(ranked[:depth], start=1)
    )
    ideal = sum(
        grade / math.log2(rank + 1)
        for rank, grade in enumerate(sorted(grades.values(), reverse=True)[:depth], start=1)
    )
    return gain / ideal if ideal > 0 else 0.0


def recall_at(ranked: Sequence[str], grades: dict[str, int], depth: int = HITS_PER_QUERY) -> float:
    relevant = {doc_id for doc_id, grade in grades.items() if grade > 0}
    return len(relevant.intersection(ranked[:depth])) / len(relevant) if relevant else 0.0


def scores(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> tuple[float, float]:
    """Mean NDCG@10 and recall@100 over the queries ranked (all the judged ones)."""
    ndcg = [ndcg_at(ranked, qrels[query_id]) for query_id, ranked in rankings.items()]
    recall = [recall_at(ranked, qrels[query_id]) for query_id, ranked in rankings.items()]
    return statistics.fmean(ndcg), statistics.fmean(recall)


def run_searches(
    collection: Collection,
    modes: Sequence[str],
    embedder: Embedder,
    searcher: Embedder,
    cache_dir: Path,
    fusions: Sequence[HybridFusion] = (),
) -> tuple[int, dict[str, ModeResult], dict[str, tuple[float, float]]]:
    """Load the corpus into a new Edge store (vectors by `embedder`, as a load makes them) and
    answer every judged query in every mode (queries by `searcher`, as `book-pipeline search`
    embeds them): the store's count of points, each mode's scores and median time, and each
    of `fusions`' scores."""
    vectors = corpus_vectors(collection.books, embedder, cache_dir)
    rankings: dict[str, dict[str, list[str]]] = {mode: {} for mode in modes}
    timings: dict[str, list[float]] = {mode: [] for mode in modes}
    with (
        tempfile.TemporaryDirectory(prefix="book_pipeline_retrieval_") as scratch,
        open_vector_store("retrieval_benchmark", Path(scratch) / "edge") as store,
    ):
        store.ensure_collection(embedder.dimension, embedder.model_name)
        store.upsert_books(collection.books, vectors, collection.corpus_sha256)
        docs = store.count()
        if docs != len(collection.books):
            raise RuntimeError(
                f"the store holds {docs} points for {len(collection.books)} documents"
            )
        say(f"stored {docs} documents in a Qdrant Edge store")
        first_query = next(iter(collection.queries.values()))
        for mode in modes:  # untimed: the first call loads the model and warms caches
            search_books(store, searcher, first_query, HITS_PER_QUERY, mode=mode)
        for done, (query_id, text) in enumerate(collection.queries.items(), start=1):
            for mode in modes:
                started = time.perf_counter()
                hits = search_books(store, searcher, text, HITS_PER_QUERY, mode=mode)
                timings[mode].append(1000 * (time.perf_counter() - started))
                rankings[mode][query_id] = [collection.doc_ids[hit.book_index] for hit in hits]
            if done % PROGRESS_EVERY == 0 or done == len(collection.queries):
                say(f"answered {done}/{len(collection.queries)} queries")
        fused = fusion_rankings(store, searcher, collection, fusions)
    results = {}
    for mode in modes:
        ndcg, recall = scores(rankings[mode], collection.qrels)
        results[mode] = ModeResult(ndcg, recall, statistics.median(timings[mode]))
    return docs, results, {name: scores(ranks, collection.qrels) for name, ranks in fused.items()}


def fusion_rankings(
    store: Any, searcher: Embedder, collection: Collection, fusions: Sequence[HybridFusion]
) -> dict[str, dict[str, list[str]]]:
    """Each query's hybrid hits under each fusion, from one embedding of the query."""
    rankings: dict[str, dict[str, list[str]]] = {fusion_name(f): {} for f in fusions}
    if not fusions:
        return rankings
    vectors = searcher.embed(list(collection.queries.values()))
    for (query_id, text), vector in zip(collection.queries.items(), vectors, strict=True):
        keyword_vector = query_keyword_vector(text)
        for fusion in fusions:
            points = store.hybrid_search(
                vector.tolist(), keyword_vector, HITS_PER_QUERY, fusion=fusion
            )
            rankings[fusion_name(fusion)][query_id] = [
                collection.doc_ids[point.payload["book_index"]] for point in points
            ]
    return rankings


def fusion_name(fusion: HybridFusion) -> str:
    if fusion.method == "dbsf":
        return "dbsf"
    return f"rrf:{fusion.rrf_k}:{fusion.dense_weight:g}"


def fusion_list(text: str) -> list[HybridFusion]:
    """`dbsf`, `rrf:K` or `rrf:K:DENSE_WEIGHT`, comma-separated."""
    fusions = []
    for spec in (part.strip() for part in text.split(",") if part.strip()):
        method, *numbers = spec.split(":")
        try:
            if method == "dbsf" and not numbers:
                fusions.append(HybridFusion(method="dbsf"))
            elif method == "rrf" and 1 <= len(numbers) <= 2:
                weight = float(numbers[1]) if len(numbers) == 2 else 1.0
                fusions.append(
                    HybridFusion(method="rrf", rrf_k=int(numbers[0]), dense_weight=weight)
                )
            else:
                raise ValueError(spec)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected dbsf, rrf:K or rrf:K:DENSE_WEIGHT, found {spec!r}"
            ) from None
    return fusions


def bm25s_scores(collection: Collection) -> tuple[float, float]:
    """bm25s's BM25 over the text a keyword search matches (`keyword_text`)."""
    import bm25s
    from py_rust_stemmers import SnowballStemmer

    stem = SnowballStemmer("english").stem_words
    texts = [keyword_text(book.title, book.author, book.description) for book in collection.books]
    index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    index.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False),
        show_progress=False,
    )
    query_ids = list(collection.queries)
    query_tokens = bm25s.tokenize(
        [collection.queries[query_id] for query_id in query_ids],
        stopwords="en",
        stemmer=stem,
        return_ids=False,
        show_progress=False,
    )
    positions, bm25_scores = index.retrieve(
        query_tokens, k=min(HITS_PER_QUERY, len(texts)), show_progress=False, n_threads=1
    )
    # bm25s fills its k results with unmatched documents (score 0): they were not found.
    rankings = {
        query_id: [
            collection.doc_ids[position]
            for position, score in zip(positions[row], bm25_scores[row], strict=True)
            if score > 0
        ]
        for row, query_id in enumerate(query_ids)
    }
    return scores(rankings, collection.qrels)


def mode_list(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in SEARCH_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(
            f"expected modes among {', '.join(SEARCH_MODES)}, found {text!r}"
        )
    return list(dict.fromkeys(modes))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=f"The corpus's dense vectors are cached in --cache-dir (default {DEFAULT_CACHE_DIR}"
        "), one .npy file per model and corpus, named by a hash of the model's name and the "
        "texts embedded; query vectors are never cached (the search embeds them). "
        "The embedder is configured as for the pipeline (BOOK_PIPELINE_EMBEDDER, "
        "BOOK_PIPELINE_EMBEDDING_MODEL); the store is always a temporary Qdrant Edge one.",
    )
    parser.add_argument("--data", type=Path, required=True, help="a folder in BEIR's layout")
    parser.add_argument("--split", required=True, help="the qrels file: qrels/SPLIT.tsv")
    parser.add_argument(
        "--modes",
        type=mode_list,
        default=["dense", "keyword", "hybrid"],
        help="comma-separated search modes (default: dense,keyword,hybrid)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="where the corpus's dense vectors are kept between runs (see below)",
    )
    parser.add_argument(
        "--bm25s", action="store_true", help="also score bm25s's BM25, a reference for keyword"
    )
    parser.add_argument(
        "--fusions",
        type=fusion_list,
        default=[],
        help="also score hybrid search fused otherwise: dbsf, rrf:K, rrf:K:DENSE_WEIGHT",
    )
    args = parser.parse_args()

    try:
        collection = read_collection(args.data, args.split)
    except (BenchmarkInputError, UnicodeDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    say(
        f"{len(collection.books)} documents, {len(collection.queries)} queries judged in "
        f"{args.split}"
    )
    settings = Settings.from_environment()
    embedder = choose_embedder(settings.embedder_choice, on_error_response=say)
    searcher = choose_embedder(settings.embedder_choice, for_query=True, on_error_response=say)
    docs, results, fused = run_searches(
        collection, args.modes, embedder, searcher, args.cache_dir.expanduser(), args.fusions
    )
    model_name = embedder.model_name
    report: dict[str, Any] = {
        "docs": docs,
        "queries": len(collection.queries),
        "model": model_name,
        "modes": {
            mode: {
                "ndcg@10": round(result.ndcg, 4),
                "recall@100": round(result.recall, 4),
                "p50_ms": round(result.p50_ms, 2),
            }
            for mode, result in results.items()
        },
    }
    if fused:
        report["fusions"] = {
            name: {"ndcg@10": round(ndcg, 4), "recall@100": round(recall, 4)}
            for name, (ndcg, recall) in fused.items()
        }
    if args.bm25s:
        ndcg, recall = bm25s_scores(collection)
        report["reference"] = {"bm25s": {"ndcg@10": round(ndcg, 4), "recall@100": round(recall, 4)}}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{docs} documents, {len(collection.queries)} queries ({args.split}), model {model_name}")
    print(f"{'mode':<10} {'NDCG@10':>8} {'recall@100':>11} {'p50 ms':>8}")
    for mode, values in report["modes"].items():
        print(
            f"{mode:<10} {values['ndcg@10']:>8.4f} {values['recall@100']:>11.4f} "
            f"{values['p50_ms']:>8.2f}"
        )
    if args.bm25s:
        reference = report["reference"]["bm25s"]
        print(
            f"{'bm25s':<10} {reference['ndcg@10']:>8.4f} {reference['recall@100']:>11.4f} "
            f"{'':>8}  (reference BM25)"
        )
    for name, values in report.get("fusions", {}).items():
        print(f"{name:<10} {values['ndcg@10']:>8.4f} {values['recall@100']:>11.4f}  (hybrid)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
