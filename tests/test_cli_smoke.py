from typer.testing import CliRunner

from tierserve import __version__
from tierserve.cli.main import app


def test_version_prints_package_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__
