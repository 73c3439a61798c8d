"""`run --help` says what a newcomer asks first: which profiles, what the exit codes mean, how
a command line looks (issue 17); read from the parser the CLI really builds."""

from __future__ import annotations

import pytest

from agent.cli import EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_TERMINATED, EXIT_USAGE, build_parser
from agent.config import profiles


def test_run_help_lists_profiles_exit_codes_and_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["run", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    profile_rows = text.split("profiles (--profile NAME", 1)[1].split("exit codes:")[0]
    listed = [line.split()[0] for line in profile_rows.splitlines()[1:] if line.strip()]
    assert listed == profiles() and "sim" in listed
    codes = text.split("exit codes:", 1)[1].split("examples:")[0]
    for code in (0, 1, EXIT_USAGE, EXIT_NOTHING, EXIT_INTERRUPTED, EXIT_TERMINATED):
        assert f"{code} " in codes
    examples = text.split("examples:", 1)[1]
    assert 'python -m agent run "I spilled the milk"' in examples
    assert '--set \'sim.objects=["apple", "bowl"]\'' in examples  # quoted as the shell needs
