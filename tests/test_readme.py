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


def test_every_test_the_readme_names_exists():
    """The Reliability table names the test behind each promise: each must be a real test."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"`(?:(test_\w+)\.py::)?(test_\w+)`", text.split("## Reliability", 1)[1].split("\n## ", 1)[0])
    assert len(named) >= 10
    current = None
    missing = []
    for module, name in named:
        current = module or current
        source = (ROOT / "tests" / f"{current}.py").read_text(encoding="utf-8")
        if not re.search(rf"^(async )?def {name}\(", source, re.M):
            missing.append(f"{current}.py::{name}")
    assert missing == []
