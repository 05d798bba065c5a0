from tests.edge.updates.conftest import model_v2, model_v3  # noqa: F401 - shared fixtures
