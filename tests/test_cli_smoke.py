import subprocess
import sys

from typer.testing import CliRunner

from tierserve import __version__
from tierserve.cli.main import app


def test_version_prints_package_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_the_entry_point_exits_as_the_command_says() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tierserve.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run("version").returncode == 0
    assert run("--help").returncode == 0
    bare = run()  # help, as before: typer's no_args_is_help
    assert bare.returncode == 2 and "Usage" in bare.stdout
    assert run("example").stdout.startswith("cluster ")
