"""`check`'s interrupted-partial rule, with the real Meltano: a `meltano run
--state-strategy merge` whose tap fails halfway leaves a partial half and a FAIL row in
`runs`; check warns about it (exit 0, 1 with --strict). A merge-strategy run that succeeds,
and a `meltano state merge` (a STATE_EDIT row), leave partial halves that are no finding.
"""

from __future__ import annotations

import pytest

from tests.support.cli import clean_env, meltano, state_ext
from tests.support.project import write_project
from tests.support.safe_runs import plugins

pytestmark = pytest.mark.meltano
STATE_ID = "dev:tap-mini-to-target-mini"


def findings(root, env, *extra):
    result = state_ext("check", "--format", "json", *extra, cwd=root, env=env, check=False)
    return result.returncode, result.json()["findings"]


def test_a_failed_merge_run_leaves_a_partial_half_check_warns_about(tmp_path, meltano_bin):
    root = write_project(tmp_path / "proj", plugins=plugins())
    env = clean_env()
    run = ["run", "--state-strategy", "merge", "tap-mini", "target-mini"]
    meltano(*run, cwd=root, env={**env, "TAP_MINI_TOTAL": "2"})
    code, found = findings(root, env)
    assert code == 0 and [f for f in found if f["rule"] == "interrupted-partial"] == []

    failed = meltano(*run, cwd=root, env={**env, "TAP_MINI_TOTAL": "9",
                                          "TAP_MINI_FAIL_AFTER": "3"}, check=False)
    assert failed.returncode != 0
    got = state_ext("get", STATE_ID, cwd=root, env=env).json()
    assert got["singer_state"]["bookmarks"]["items"]["last_id"] >= 3  # the partial half
    code, found = findings(root, env)
    (warned,) = [f for f in found if f["rule"] == "interrupted-partial"]
    assert code == 0 and warned["state_id"] == STATE_ID and warned["severity"] == "warning"
    assert "ended FAIL" in warned["message"]
    assert findings(root, env, "--strict")[0] == 1
    text = state_ext("check", cwd=root, env=env).stdout
    assert f"warning: {STATE_ID}: interrupted-partial: the partial half was left by run" in text

    meltano(*run, cwd=root, env={**env, "TAP_MINI_TOTAL": "9"})  # the next run succeeds
    assert [f for f in findings(root, env)[1] if f["rule"] == "interrupted-partial"] == []
    meltano("state", "merge", STATE_ID, '{"singer_state": {"bookmarks": {"x": {"a": 1}}}}',
            cwd=root, env=env)
    assert [f for f in findings(root, env)[1] if f["rule"] == "interrupted-partial"] == []
