"""Ctrl-C during ``python -m wan generate`` cancels the job at its next cancel point, as ComfyUI's
cancel does: exit status 130, a message that says so, no output file (nor a partial one)."""

import os
import signal

from cli_runs import _args, files, spiece_bytes  # noqa: F401 (fixtures)
from wan.cli import generate, main


def test_ctrl_c_after_the_first_step_cancels_without_output(files, tmp_path, capsys, monkeypatch):
    steps = []

    class CtrlCAfterStepOne:
        def __init__(self, quiet):
            pass

        def __call__(self, step, total, _preview=None):
            steps.append(step)
            if step == 1:
                os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C

    monkeypatch.setattr(generate, "ProgressBar", CtrlCAfterStepOne)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "fox.mp4"
    assert main(_args(files, out, "--frames", "5", "--steps", "4")) == 130
    assert steps == [1]  # the second step never finished
    assert "cancelled" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C is the terminal's again
