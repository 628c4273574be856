"""The error type for bad user input (the CLI prints its message as one line and exits 2), and
the one-line warning for problems recovered from."""
import sys


class UserError(Exception):
    """Bad input from the user (config, paths, documents, labels). The message names the
    bad value and the expected form."""


class StopTraining(Exception):
    """Raised by a training ``on_checkpoint`` callback to end training at that step (e.g. a
    pretraining screen): ``train`` saves the step's state first, then re-raises it, so a rerun
    resumes from there. The CLI prints its message as one line and exits 3. Defined here, with no
    imports, so the CLI can catch it without importing torch."""


def warn(message: str) -> None:
    """One line on stderr about something recovered from (e.g. a corrupt file recomputed)."""
    print(f"neglect: warning: {message}", file=sys.stderr)
