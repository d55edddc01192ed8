"""The Qdrant store, in layers that import only downwards:

- `base`: the interface every engine implements (`BookVectorStore`), its records and errors;
- `copying`: copying a collection between any two stores, verified;
- `edge` (Qdrant Edge, embedded) and `server` (qdrant-client): the engines;
- `legacy`: the previous version's embedded store, copied once into Edge;
- `versions` (`edge_versions`, `server_versions`): the collection's versions, one per embedding
  model, and the pointer (alias) to the current one;
- `opening`: opening the configured store, the one entry the pipeline and the CLI use.
"""
