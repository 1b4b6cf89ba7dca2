from __future__ import annotations

import pytest

from tests.conftest import run_qualia


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["crawl", "someone"],  # neither --substack nor --pinterest
        ["crawl", "someone", "--substack", "x", "--depth", "3"],
        ["search", "someone"],  # neither TEXT nor --image
        ["search", "someone", "tea", "--k", "0"],
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert run_qualia(*args).returncode == 2


def test_unknown_profile_is_one_line_exit_1() -> None:
    out = run_qualia("corpus", "nobody")
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "nobody" in lines[0] and "qualia crawl" in lines[0]


def test_bad_profile_name_is_refused_before_any_path_is_built() -> None:
    out = run_qualia("corpus", "../etc")
    assert out.returncode == 1
    assert "invalid profile name" in out.stderr


def test_eval_without_adapter_is_one_line_exit_1() -> None:
    out = run_qualia("eval", "nobody", "--json")
    assert out.returncode == 1
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
