"""What the tests share besides fixtures (those stay in `conftest.py`): the loopback servers that
stand in for the network, Dagster runs as the tests start them, the data folder as they read it,
and embedders that count. The benchmarks import it too."""
