"""What `python -m agent run --help` shows below the options: profiles, exit codes, examples.

The profile names come from the package (`agent.config.profiles()`), so a new profile file is
listed even before it has a summary here; the exit codes are the CLI's own constants.
"""

from __future__ import annotations

from agent.config import profiles

#: One line per shipped profile (details: the comment at the top of agent/profiles/NAME.toml).
PROFILE_SUMMARIES = {
    "sim": "the MuJoCo world, ground-truth perception, the shipped TPM policy (default)",
    "franka-sim": "the same scene in franky-sim, driven by the real Franka driver",
    "real": "a Franka arm, a RealSense, an Azure Kinect (a lab file refines it: --config)",
}

EXIT_CODES = (
    "  0 success, 1 the task failed (or an unexpected error), 2 bad input or config,\n"
    "  3 nothing to do (no object fits, or it is not in view at the start),\n"
    "  130 interrupted (Ctrl-C), 143 terminated (SIGTERM): the arm is stopped and the run\n"
    "  folder finished first"
)

EXAMPLES = (
    '  python -m agent run "I spilled the milk"\n'
    '  python -m agent run --set sim.seed=3 --set models.policy=expert "I am thirsty"\n'
    '  python -m agent run --set \'sim.objects=["apple", "bowl"]\' \\\n'
    '      --set models.policy=expert "put the apple in the bowl"\n'
    '  python -m agent run --profile franka-sim "I spilled the milk"\n'
    '  python -m agent run --config examples/lab_real.toml "I spilled the milk"'
)


def run_epilog() -> str:
    """The epilog of `run` (for argparse.RawDescriptionHelpFormatter: kept as written)."""
    names = profiles()
    width = max(len(name) for name in names)
    rows = "\n".join(
        f"  {name:<{width}}  {PROFILE_SUMMARIES.get(name, '')}".rstrip() for name in names
    )
    return (
        f"profiles (--profile NAME, or --config FILE naming one):\n{rows}\n\n"
        f"exit codes:\n{EXIT_CODES}\n\n"
        f"examples:\n{EXAMPLES}\n\n"
        "docs/cli.md and docs/configuration.md have the rest (every --set key: "
        "python -m agent config)."
    )
