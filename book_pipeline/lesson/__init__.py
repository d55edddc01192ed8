"""The Airflow lesson's toy, apart from the book pipeline: its own code location
(`book_pipeline.lesson.definitions`, listed in workspace.yaml), which nothing of the pipeline
imports."""
