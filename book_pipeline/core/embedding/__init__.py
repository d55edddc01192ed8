"""Turning texts into vectors, one module per family, each building on `base` only:

- `base`: what every embedder is (`Embedder`) and how it fails;
- `bundled`: the bundled model's files (all-MiniLM-L6-v2 int8, shipped by two packages), verified;
- `local`: fastembed models: the bundled one, one from a folder, or one by name from the hub;
- `openai_endpoint`: any OpenAI-compatible embeddings endpoint;
- `query`: the bundled model for a search's few words, without fastembed;
- `choosing`: the one function that picks the embedder a configuration names.
"""
