"""The command line as a new user meets it: usage, help, and plain, fast answers to mistakes."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qualia import __version__
from qualia.cli.main import build_parser
from qualia.corpus import Corpus
from qualia.workspace import Workspace
from tests.helpers import ROOT, run_qualia

# Runs the command line in a fresh process and reports, after it, whether torch was ever imported.
NO_TORCH = """
import json, sys
from qualia.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def run_watched(*args: str, home: Path) -> tuple[int, bool, str, str]:
    """(exit code, whether torch was imported, stdout, the command's own stderr lines)."""
    out = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, cwd=ROOT,
                         env={"QUALIA_HOME": str(home), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, timeout=120)
    *lines, last = out.stderr.strip().splitlines()
    watched = json.loads(last)
    return watched["code"], watched["torch"], out.stdout, "\n".join(lines)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["crawl", "someone"],  # neither --substack nor --pinterest
        ["crawl", "someone", "--substack", "x", "--depth", "3"],
        ["search", "someone"],  # neither TEXT nor --image
        ["search", "someone", "tea", "--k", "0"],
        ["search", "someone", "tea", "--image", "x.jpg"],  # both
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    out = run_qualia(*args)
    assert out.returncode == 2 and out.stdout == ""


def test_version() -> None:
    out = run_qualia("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"qualia {__version__}"


def _parsers(parser: argparse.ArgumentParser, path: str = "qualia"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_argument_has_a_help_line_and_shows_its_default() -> None:
    seen = 0
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            seen += 1
            assert action.help, f"{path} {action.dest} has no help"
        text = parser.format_help()
        for action in parser._actions:
            if action.default not in (None, False, argparse.SUPPRESS) and action.help:
                assert f"(default: {action.default})" in " ".join(text.split()), (path, action.dest)
    assert seen > 40
    train = " ".join(run_qualia("train", "--help").stdout.split())
    assert "(default: ViT-B-32)" in train and "(default: 10)" in train and "passes over the training pairs" in train


@pytest.mark.parametrize("command", [["corpus"], ["train"], ["eval"], ["index"], ["search", "tea"]])
def test_a_missing_profile_is_answered_without_torch_naming_the_whole_chain(command: list[str], tmp_path: Path) -> None:
    code, torch_loaded, stdout, stderr = run_watched(command[0], "nobody", *command[1:], "--json", home=tmp_path)
    assert code == 1 and stdout == "" and not torch_loaded
    assert len(stderr.splitlines()) == 1 and "no profile 'nobody'" in stderr
    assert "`qualia crawl nobody --substack HANDLE`" in stderr
    wanted = {"corpus": 0, "train": 0, "eval": 1, "index": 1, "search": 2}[command[0]]
    assert stderr.count(", then ") == wanted  # every step still to run, said once
    assert not (tmp_path / "profiles").exists()


def test_later_steps_are_named_from_where_the_profile_stands(tmp_path: Path) -> None:
    Corpus.open(Workspace(tmp_path), "mara").close()
    code, torch_loaded, _, stderr = run_watched("search", "mara", "tea", home=tmp_path)
    assert code == 1 and not torch_loaded
    assert stderr.endswith("profile 'mara' has no adapter yet: run `qualia train mara`, then `qualia index mara`")
    code, torch_loaded, _, stderr = run_watched("eval", "mara", "--adapter", "20260101T000000000000Z", home=tmp_path)
    assert code == 1 and not torch_loaded and "no adapter of 'mara' version '20260101T000000000000Z'" in stderr
    code, torch_loaded, _, stderr = run_watched("train", "mara", "--epochs", "0", home=tmp_path)
    assert code == 2 and not torch_loaded and "epochs >= 1" in stderr


def test_a_bad_profile_name_is_a_usage_error_before_any_path(tmp_path: Path) -> None:
    code, torch_loaded, _, stderr = run_watched("corpus", "../etc", home=tmp_path)
    assert code == 2 and not torch_loaded and "invalid profile name '../etc'" in stderr
    assert not any(tmp_path.iterdir())


def test_messages_carry_no_reprs_or_errno_lines(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    Corpus.open(ws, "mara").close()
    (ws.adapters_dir("mara") / "20260101T000000000000Z").mkdir(parents=True)
    (ws.index_dir("mara") / "20260101T000000000000Z").mkdir(parents=True)
    not_a_picture = tmp_path / "notimg.jpg"
    not_a_picture.write_text("hello")
    for args, expected in (
        (["search", "mara", "--image", str(not_a_picture)], "not a picture qualia can read"),
        (["search", "mara", "--image", str(tmp_path / "nothere.jpg")], "no picture file"),
        (["search", "mara", "--image", str(tmp_path)], "it is a folder"),
    ):
        out = run_qualia(*args, env={"QUALIA_HOME": str(tmp_path)})
        assert out.returncode == 1 and out.stdout == "", args
        assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert " at 0x" not in out.stderr and "[Errno" not in out.stderr and "<" not in out.stderr


def test_unknown_backbone_is_named_plainly(tmp_path: Path) -> None:
    from tests.test_train_eval import build_synthetic_corpus

    build_synthetic_corpus(Workspace(tmp_path), "mara", n_pins=20, n_posts=0)
    out = run_qualia("train", "mara", "--backbone", "ViT-B-99", env={"QUALIA_HOME": str(tmp_path)})
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "unknown backbone 'ViT-B-99'" in out.stderr and "None" not in out.stderr


def test_serve_on_a_taken_port_says_so_before_loading_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, torch_loaded, stdout, stderr = run_watched("serve", "--port", port, home=tmp_path)
    assert code == 1 and not torch_loaded and stdout == ""
    assert stderr == f"qualia: error: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("flags,env,said", [
    (["--batch-torch-threads", "-1"], {}, "argument --batch-torch-threads: must be a whole number, 0 or more, not '-1'"),
    (["--torch-threads", "two"], {}, "argument --torch-threads: must be a whole number, 0 or more, not 'two'"),
    ([], {"QUALIA_BATCH_TORCH_THREADS": "-1"}, "QUALIA_BATCH_TORCH_THREADS: Input should be greater than or equal to 0"),
])  # fmt: skip
def test_serve_refuses_a_bad_setting_in_one_line(tmp_path: Path, flags: list[str], env: dict[str, str], said: str) -> None:
    out = run_qualia("serve", "--port", "0", *flags, env={"QUALIA_HOME": str(tmp_path), **env})
    assert out.returncode == 2 and out.stdout == ""
    assert said in out.stderr.strip().splitlines()[-1] and "Traceback" not in out.stderr


def test_an_unexpected_failure_is_one_line_naming_the_way_to_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "profiles" / "mara").mkdir(parents=True)
    (tmp_path / "profiles" / "mara" / "corpus.sqlite").write_bytes(b"not a database at all" * 100)
    out = run_qualia("corpus", "mara", "--json", env={"QUALIA_HOME": str(tmp_path)})
    assert out.returncode == 1 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "QUALIA_DEBUG=1" in out.stderr
    debug = run_qualia("corpus", "mara", env={"QUALIA_HOME": str(tmp_path), "QUALIA_DEBUG": "1"})
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize("flags,env,logged", [([], {}, False), (["--access-log"], {}, True),
                                              ([], {"QUALIA_ACCESS_LOG": "1"}, True)])  # fmt: skip
def test_serve_logs_a_line_per_request_only_when_asked(monkeypatch: pytest.MonkeyPatch, flags: list[str],
                                                       env: dict[str, str], logged: bool) -> None:  # fmt: skip
    """The access log costs each request time on the event loop; /metrics counts requests either way."""
    import uvicorn

    from qualia.cli.main import main

    started: dict = {}

    class Server:  # uvicorn's, as far as serve uses it, without serving
        def __init__(self, config: uvicorn.Config) -> None:
            started["config"] = config

        def run(self, sockets: list[socket.socket]) -> None:
            for sock in sockets:
                sock.close()

    monkeypatch.setattr(uvicorn, "Server", Server)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--port", "0", *flags]) == 0
    assert started["config"].access_log is logged


def _niceness_after(started_at: int, asked: int) -> int:
    """The niceness of a forked child that starts at ``started_at`` and asks for ``asked``."""
    import multiprocessing

    def child(out) -> None:
        import os

        from qualia.cli.main import run_in_background

        os.nice(started_at)
        run_in_background(asked)
        out.put(os.nice(0))

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    process = ctx.Process(target=child, args=(out,))
    process.start()
    process.join(timeout=30)
    return out.get(timeout=5)


def test_training_and_indexing_run_as_background_work_unless_told() -> None:
    """A server on the same cores answers first (docs/benchmarks.md): train and index lower their own CPU
    priority, never raise it, and --nice 0 leaves it as started."""
    import os

    for command in (["train", "alice"], ["index", "alice"]):
        assert build_parser().parse_args(command).nice == 19
        assert build_parser().parse_args([*command, "--nice", "0"]).nice == 0
    base = os.nice(0)
    assert _niceness_after(0, 7) == max(base, 7)
    assert _niceness_after(12 - base if base < 12 else 0, 7) == max(base, 12)  # already nicer: left as it is
    assert _niceness_after(0, 0) == base
