"""Progress on stderr: rich bars on a terminal, one plain line per stage otherwise, nothing
with --quiet / --json (fast: no build)."""

from __future__ import annotations

import io

from edgepack.cli.progress import SHARED, build_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(report) -> None:  # type: ignore[no-untyped-def]
    report(SHARED, "load: model source")
    report(SHARED, "export: torch.export")
    for t in ("rpi4", "host"):
        report(t, "convert: litert-torch to float32 .tflite")
        report(t, "quantize: full-int8 (ai-edge-litert calibrator)")
        report(t, "validate: parity, accuracy, size, host latency")
        report(t, f"package: dist/digits-{t}")


def test_bars_on_a_terminal() -> None:
    term = Terminal()
    with build_progress(["rpi4", "host"], enabled=True, stream=term) as report:
        feed(report)
    text = term.getvalue()
    assert "\x1b[" in text  # drawn with terminal control sequences
    for label in ("load + export", "rpi4", "host", "package: dist/digits-host"):
        assert label in text
    assert "━" in text  # the bar itself


def test_plain_lines_when_not_a_terminal() -> None:
    log = io.StringIO()
    ticks = iter(float(i) for i in range(100))  # a clock advancing 1 s per message
    with build_progress(
        ["rpi4", "host"], enabled=True, stream=log, clock=lambda: next(ticks)
    ) as report:
        feed(report)
        report("host", "package: again on another node", node="worker-2")
    lines = log.getvalue().splitlines()
    # One line per target and stage: the target, its node, the seconds since its first line.
    assert lines[:4] == [
        "  load: model source",
        "  export: torch.export",
        "  [rpi4 @ local, 0.0 s] convert: litert-torch to float32 .tflite",
        "  [rpi4 @ local, 1.0 s] quantize: full-int8 (ai-edge-litert calibrator)",
    ]
    assert lines[6] == "  [host @ local, 0.0 s] convert: litert-torch to float32 .tflite"
    assert lines[9] == "  [host @ local, 3.0 s] package: dist/digits-host"
    assert lines[10] == "  [host @ worker-2, 4.0 s] package: again on another node"
    assert len(lines) == 11 and "\x1b[" not in log.getvalue()


def test_disabled_prints_nothing() -> None:
    term = Terminal()
    with build_progress(["rpi4"], enabled=False, stream=term) as report:
        feed(report)
    assert term.getvalue() == ""
