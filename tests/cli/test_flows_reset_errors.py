"""``likes flows-reset`` tells the operator why it failed and what is left to do.

A backfill that fails inside the reset surfaces as Bytewax's ``RuntimeError`` ("error
writing output batch"), whose cause is the real error. The clean-clone run at bc79970
printed only that line, so the cause was lost; these check that the operator now sees
the whole chain and the remaining step of the runbook.
"""

from __future__ import annotations

import pytest

from cli.main import main
from ops import flow_reset
from ops.flow_reset import ResetError


def _failing_reset(*_: object, **__: object) -> None:
    try:
        try:
            raise ValueError("the owner answered 500: writing repair rows failed")
        except ValueError as store_error:
            raise RuntimeError("(src/outputs.rs:554:34): error writing output batch") from (
                store_error
            )
    except RuntimeError as bytewax_error:
        raise ResetError("the flows were reset ...; finish with `likes backfill`") from (
            bytewax_error
        )


def test_a_failed_backfill_prints_its_cause_and_the_step_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(flow_reset, "reset", _failing_reset)
    assert main(["flows-reset", "--yes", "--json"]) == 1
    err = capsys.readouterr().err
    assert "ValueError: the owner answered 500" in err  # the real error, with its traceback
    assert "error writing output batch" in err
    assert err.rstrip().endswith("finish with `likes backfill`")


def test_anything_else_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(flow_reset, "reset", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["flows-reset", "--yes"])
