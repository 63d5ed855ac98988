"""The command line starts without the heavy libraries: they load inside the commands that use them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HEAVY = "{'torch', 'sklearn', 'scipy', 'pyarrow', 'PIL'}"
LOADED_HEAVY = f"sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY})"


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert run_python(f"import jifr.cli, sys; print({LOADED_HEAVY})") == "[]"


def test_every_help_page_loads_no_heavy_library() -> None:
    code = f"""
import sys
from typer.testing import CliRunner
from jifr.cli import app
pages = [[], ["generate"], ["prepare"], ["models"], ["train"], ["evaluate"], ["recommend"], ["serve"], ["compare"],
         ["demo"], ["datasets"], ["datasets", "build"], ["datasets", "stats"], ["features"], ["features", "extract"],
         ["items"], ["items", "add"]]
for page in pages:
    result = CliRunner().invoke(app, [*page, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output, (page, result.output)
print({LOADED_HEAVY})
"""
    assert run_python(code) == "[]"


def test_jifr_help_exits_0() -> None:
    jifr = shutil.which("jifr", path=str(Path(sys.executable).parent)) or shutil.which("jifr")
    assert jifr, "the jifr console script is not installed"
    done = subprocess.run([jifr, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout and "recommend" in done.stdout


def test_light_names_match_the_registries() -> None:
    from jifr.datasets.cli import DATASET_NAMES, builders
    from jifr.datasets.movielens import BUNDLES_BUILDER, PLANTED_BUILDER, POSTERS_BUILDER
    from jifr.features.encoders import DEFAULT_ENCODER, ENCODERS
    from jifr.features.names import DEFAULT_ENCODER as DEFAULT_NAME
    from jifr.features.names import ENCODER_NAMES

    assert tuple(ENCODERS) == ENCODER_NAMES and DEFAULT_ENCODER == DEFAULT_NAME
    assert DATASET_NAMES == (POSTERS_BUILDER, BUNDLES_BUILDER, PLANTED_BUILDER) == tuple(builders())


def test_the_features_package_still_exports_its_names() -> None:
    import jifr.features as features
    from jifr.features.extract import extract_features

    assert features.extract_features is extract_features
    assert all(hasattr(features, name) for name in features.__all__)
