"""The one progress line: redrawn only on a terminal, final lines always when enabled."""

from __future__ import annotations

import io

from rnnonnx.progress import Progress, bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_line_only_on_a_terminal_final_line_whenever_enabled():
    terminal, log = FakeTerminal(), io.StringIO()
    for stream in (terminal, log):
        line = Progress(True, stream=stream)
        line.show("epoch 1 " + bar(3, 6))
        line.finish("epoch 1 done")
    assert terminal.getvalue() == "\repoch 1 [############............] 3/6  \repoch 1 done\n"
    assert log.getvalue() == "epoch 1 done\n"
    quiet = FakeTerminal()
    line = Progress(False, stream=quiet)
    line.show("x")
    line.finish("y")
    assert quiet.getvalue() == ""


def test_worker_lines_are_never_redrawn():
    terminal = FakeTerminal()
    line = Progress(True, live=False, stream=terminal)
    line.show("live")
    line.finish("final")
    assert terminal.getvalue() == "final\n"
