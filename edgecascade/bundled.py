"""Files shipped inside the package: device profiles, the systemd unit and its environment
file, the Mosquitto config, the demo models and sample images.

They live under `edgecascade/data/`, which in a source checkout holds symlinks to the
repository's `firmware-configs/` and `tests/fixtures/` and in an installed wheel holds copies,
in the same relative layout: a profile's `../tests/fixtures/models/...` resolves in both.
Everything is found through importlib.resources, so a checkout, an editable install and a
wheel behave the same."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgecascade.shared.cli_values import quoted
from edgecascade.shared.errors import ConfigError

#: The demo model every bundled profile points at (a path without extension: the profile's
#: backend preference picks the .tflite or the .onnx file).
DEMO_MODEL = "digits_edge_int8"
#: How the bundled profiles spell the folder of the demo models, relative to themselves.
PROFILE_MODELS_PREFIX = "../tests/fixtures/models/"


def data_root() -> Path:
    """The package's data folder, as a real path (package data is never zipped here)."""
    root = resources.files("edgecascade") / "data"
    return Path(str(root))


def profiles_dir() -> Path:
    return data_root() / "firmware-configs"


def models_dir() -> Path:
    return data_root() / "tests" / "fixtures" / "models"


def images_dir() -> Path:
    return data_root() / "tests" / "fixtures" / "images"


def systemd_dir() -> Path:
    return profiles_dir() / "systemd"


def profile_names() -> list[str]:
    """Names of the bundled device profiles (raspberry-pi-4, ...)."""
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def profile_path(name: str) -> Path:
    """The bundled profile called `name`; ConfigError listing the known ones otherwise."""
    path = profiles_dir() / f"{name}.toml"
    # Only a listed name: `../x` would read another folder's file, a long one fail to stat.
    if name not in profile_names() or not path.is_file():
        raise ConfigError(
            f"no bundled profile {quoted(name)}; expected one of: {', '.join(profile_names())}",
            key="--profile",
        )
    return path


def demo_model_files() -> list[Path]:
    """The demo model's artifacts and their model cards."""
    return sorted(models_dir().glob(f"{DEMO_MODEL}.*"))


def sample_images() -> list[Path]:
    return sorted(images_dir().glob("*.png"))
