"""A build worker's lines: forwarded instead of written, then printed and logged by the parent as if it
had written them."""

from __future__ import annotations

from triton_repo.core import log


def test_a_worker_forwards_its_lines_and_the_parent_prints_and_logs_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(log, "_log_file", None)
    monkeypatch.setattr(log, "_forward", None)
    sent = []
    log.forward_lines(tmp_path / "build.log", sent.append)
    log.info("tiny: [bold]a line[/bold]")
    with log.step("tiny: export to ONNX and golden data"):
        log.warn("tiny: roofline skipped")
    assert log.log_traceback(RuntimeError("boom"), "tiny: verify") == tmp_path / "build.log"
    assert capsys.readouterr().err == ""  # the worker writes nothing itself
    assert not (tmp_path / "build.log").exists()
    assert [event[0] for event in sent] == ["info", "step", "warn", "done", "record"]

    monkeypatch.setattr(log, "_forward", None)  # the parent
    log.open_log(tmp_path / "build.log")
    for event in sent:
        log.replay(event)
    terminal = capsys.readouterr().err.splitlines()
    assert terminal[:2] == ["tiny: a line", "warning: tiny: roofline skipped"]
    assert terminal[2].startswith("✓ tiny: export to ONNX and golden data (0.0 s)")
    written = (tmp_path / "build.log").read_text().splitlines()[1:]
    assert written[:4] == [
        "tiny: a line",
        "warning: tiny: roofline skipped",
        "ok tiny: export to ONNX and golden data (0.0 s)",
        "--- tiny: verify: RuntimeError: boom",
    ]
