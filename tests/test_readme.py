"""The README's opening commands are what CI runs and what users copy."""

from __future__ import annotations

from tests.conftest import ROOT


def opening_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_command():
    main_job, tests = opening_commands()
    assert "torch==2.13.0" in main_job and "rnnonnx train" in main_job and "rnnonnx predict" in main_job
    assert tests.endswith("python -m pytest") and "torch==2.13.0" in tests
    assert tests in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
