"""The reference of every profile key is generated from the typed profile; the committed
docs/profile-reference.md must equal what `edgecascade agent config --markdown` prints."""

from __future__ import annotations

import json

from edgecascade.edge.config import DeviceProfile
from edgecascade.shared.config_env import setting_paths, variable_name
from tests.edge.config.support import REPO, cli

DOC = REPO / "docs" / "profile-reference.md"


def test_committed_reference_equals_the_generated_one() -> None:
    result = cli("agent", "config", "--markdown")
    assert result.returncode == 0, result.stderr
    assert DOC.read_text() == result.stdout, (
        "docs/profile-reference.md is stale: run `edgecascade agent config --markdown > docs/profile-reference.md`"
    )


def test_reference_lists_every_key_and_its_variable() -> None:
    text = DOC.read_text()
    for path in setting_paths(DeviceProfile):
        assert f"| `{path[-1]}` |" in text, path
        assert f"`{variable_name(path)}`" in text, path
    assert "## [telemetry.hard_examples]" in text and "## [[cascade.policies]] (a list of tables)" in text


def test_schema_is_the_profiles_json_schema() -> None:
    result = cli("agent", "config", "--schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema == DeviceProfile.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"profile", "data_dir", "memory_budget_mb", "model"}
