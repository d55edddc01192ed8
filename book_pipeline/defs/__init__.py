"""The Dagster definitions: assets, ops, jobs, sensors, checks and the resources wrapping the core.

`book_pipeline.definitions` collects them into the code location's `Definitions`.
"""
