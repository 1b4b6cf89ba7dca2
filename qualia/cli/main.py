"""The `qualia` command line: the composition root, the one place that wires crawler, library and service.

Exit codes: 0 done, 1 failure (one-line reason on stderr), 2 usage error. `--json` prints exactly one
JSON object on stdout. The workspace is read from ``QUALIA_HOME`` here, once, and passed down.

Fast answers: every check that needs no model (the profile, its corpus, adapter or index, a query
picture's file, the settings, a free port) runs before torch, scrapy or fastapi is imported, so a
mistake is answered in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from crawler.options import add_crawl_arguments
from qualia import __version__
from qualia.cli.format import emit, format_counts, format_eval, format_losses, format_results, format_training_data
from qualia.config import PRECISIONS, TINY_BACKBONE, PretrainSettings, TrainSettings
from qualia.errors import InvalidArgument, NotFound, QualiaError, Unavailable
from qualia.housekeeping import DEFAULT_KEEP, collect
from qualia.logs import configure as configure_logging
from qualia.workspace import Workspace, check_profile_name

log = logging.getLogger("qualia")

MAX_K = 100


def _progress() -> bool:
    return sys.stderr.isatty()


# -- commands -------------------------------------------------------------------------------------


def corpus_counts(ws: Workspace, profile: str) -> dict[str, Any]:
    from qualia.corpus import Corpus
    from qualia.pairs import corpus_summary

    with Corpus.open(ws, profile, readonly=True) as corpus:
        return corpus_summary(corpus)


def cmd_crawl(ws: Workspace, args: argparse.Namespace) -> int:
    from crawler.run import URL_SETTINGS, crawl

    urls = {key: os.environ.get(key) for key in URL_SETTINGS}
    stats = crawl(
        ws,
        args.profile,
        substack=args.substack or [],
        pinterest=args.pinterest or [],
        depth=args.depth,
        max_items=args.max_items,
        delay=args.delay,
        progress=_progress(),
        urls=urls,
    )
    counts = corpus_counts(ws, args.profile)
    losses = format_losses(stats["sources"])
    if losses:  # a partial failure is still a success: said, and exit 0
        sys.stderr.write(losses + "\n")
    emit({"crawl": stats, "corpus": counts}, args.json, format_counts(counts))
    return 0


def cmd_import(ws: Workspace, args: argparse.Namespace) -> int:
    from crawler.exports import read_folder, read_pinterest_export, read_substack_export
    from crawler.run import import_export, import_folder

    if args.folder is not None:
        read, files = read_folder(Path(args.folder).expanduser(), args.profile)
        stats = import_folder(ws, args.profile, read, files)
    else:
        if args.substack_export is not None:
            read = read_substack_export(Path(args.substack_export).expanduser())
        else:
            base = os.environ.get("QUALIA_PINIMG_URL") or "https://i.pinimg.com"
            if not base.startswith(("http://", "https://")):
                raise InvalidArgument(f"QUALIA_PINIMG_URL must be an http(s) URL: {base[:200]!r}")
            read = read_pinterest_export(Path(args.pinterest_export).expanduser(), base)
        stats = import_export(ws, args.profile, read, delay=args.delay, progress=_progress())
    counts = corpus_counts(ws, args.profile)
    losses = format_losses(stats["sources"])
    if losses:
        sys.stderr.write(losses + "\n")
    held = stats["import"]
    human = (f"imported {held['format']}: {', '.join(f'{n} {k}s' for k, n in held['read'].items()) or 'nothing'}"
             f" ({stats['items_new']} new, {stats['images_stored']} pictures stored)"
             + "".join(f"; {why}: {n}" for why, n in held["skipped"].items()))
    emit({"crawl": stats, "corpus": counts}, args.json, human + "\n" + format_counts(counts))
    return 0


def cmd_corpus(ws: Workspace, args: argparse.Namespace) -> int:
    counts = corpus_counts(ws, args.profile)
    emit(counts, args.json, format_counts(counts))
    return 0


def cmd_train(ws: Workspace, args: argparse.Namespace) -> int:
    ws.require(args.profile, "corpus")
    run_in_background(args.nice)
    given = {name: getattr(args, name)
             for name in ("backbone", "pretrained", "epochs", "patience", "rank", "lora_blocks", "train_tokens",
                          "token_epochs", "token_lr_scale", "device", "precision", "text_negatives", "generic_replay",
                          "generic_anchor")}
    settings = TrainSettings(**given)

    from qualia.train import train_profile

    folder = train_profile(ws, args.profile, settings, progress=_progress())
    _prune(ws, args.profile)
    # training already measured the held-out pairs; `qualia eval` measures again from the files
    report = json.loads((folder / "metrics.json").read_text())
    data = json.loads((folder / "qualia.json").read_text()).get("data", {})
    emit({"adapter_version": folder.name, **report, "data": data}, args.json,
         f"adapter {folder.name}\n{format_training_data(data)}\n{format_eval(report)}")
    return 0


BACKGROUND_NICENESS = 19


def run_in_background(niceness: int) -> None:
    """Run this process at CPU niceness ``niceness`` at least, as nice(1) counts (0: as started).

    Training and indexing are batch work, and a `qualia serve` on the same cores answers people: beside a
    training run at niceness 0, one client's p50 went from 3.7 to 7.2 ms and its p99 to 15 ms; at 19 the
    p50 stayed as idle and the p99 was about 7.5 ms (docs/benchmarks.md). With the cores otherwise idle a
    nice process runs as fast as any, so the default costs a run alone nothing.
    """
    current = os.nice(0)
    if niceness > current:
        os.nice(niceness - current)
        log.debug("running at niceness %d (was %d)", os.nice(0), current)


def _prune(ws: Workspace, profile: str) -> None:
    """After a new version: keep the newest QUALIA_KEEP_VERSIONS (default 3) and what they need."""
    freed = collect(ws, profile, _keep_versions())
    if freed["removed"]:
        log.info("pruned %d old versions and leftovers of %s (%d bytes)", len(freed["removed"]), profile,
                 freed["freed_bytes"])


def _keep_versions() -> int:
    value = os.environ.get("QUALIA_KEEP_VERSIONS", "")
    if not value:
        return DEFAULT_KEEP
    if not value.isdigit() or int(value) < 1:
        raise InvalidArgument(f"QUALIA_KEEP_VERSIONS must be a whole number of at least 1, not {value[:20]!r}")
    return int(value)


def cmd_gc(ws: Workspace, args: argparse.Namespace) -> int:
    report = collect(ws, args.profile, args.keep)
    human = "\n".join(f"removed {r['path']}  ({r['why']}, {r['bytes']} bytes)" for r in report["removed"])
    emit(report, args.json, (human + "\n" if human else "") + f"freed {report['freed_bytes']} bytes")
    return 0


def cmd_eval(ws: Workspace, args: argparse.Namespace) -> int:
    ws.adapter(args.profile, args.adapter)

    from qualia.evaluate import evaluate_profile

    report = evaluate_profile(ws, args.profile, args.adapter, progress=_progress())
    emit(report, args.json, format_eval(report))
    return 0


def cmd_export(ws: Workspace, args: argparse.Namespace) -> int:
    folder = ws.adapter(args.profile, args.adapter)

    from qualia.export import export_adapter, export_merged

    out = Path(args.out).expanduser()
    report = export_merged(folder, out) if args.merged else export_adapter(folder, out)
    what = "one open_clip checkpoint with the adapter merged in" if args.merged else "a peft folder"
    config = f" (model config {report['model_config']} beside it)" if report.get("model_config") else ""
    emit(report, args.json, f"adapter {report['adapter_version']} of {args.profile} exported as {what}: {out}{config}"
                            + ("" if args.merged else f"\nhow to load it: {out / 'README.md'}"))
    return 0


def cmd_index(ws: Workspace, args: argparse.Namespace) -> int:
    if args.adapter != "none":
        if args.backbone or args.pretrained:
            raise InvalidArgument("--backbone and --pretrained go with --adapter none; an adapter knows its own backbone")
        ws.adapter(args.profile, args.adapter)
    else:
        ws.require(args.profile, "corpus")
    run_in_background(args.nice)

    from qualia.index import describe_mixed, index_profile

    choice = {"auto": None, "on": True, "off": False}
    folder = index_profile(ws, args.profile, args.adapter, progress=_progress(), backbone=args.backbone,
                           pretrained=args.pretrained, centering=choice[args.centering],
                           calibration=choice[args.calibration])
    _prune(ws, args.profile)
    manifest = json.loads((folder / "manifest.json").read_text())
    adapter = manifest.get("adapter_version") or "none (the backbone alone)"
    emit(manifest, args.json, f"index {folder.name}: {manifest['count']} vectors of dim {manifest['dim']}, "
                              f"adapter {adapter}, {describe_mixed(manifest)}")
    return 0


def cmd_search(ws: Workspace, args: argparse.Namespace) -> int:
    ws.index(args.profile)

    from qualia.search import ProfileSearcher, load_image_file, with_files

    started = time.perf_counter()
    query_image = load_image_file(args.image) if args.image else None
    searcher = ProfileSearcher.load(ws, args.profile)
    if query_image is not None:
        results = searcher.search_image(query_image, k=args.k, modality=args.modality)
    else:
        results = searcher.search_text(args.text, k=args.k, modality=args.modality)
    took_ms = (time.perf_counter() - started) * 1000
    results = with_files(ws, args.profile, results)
    emit(
        {"results": results, "adapter": searcher.adapter_version, "index": searcher.index_version, "took_ms": took_ms},
        args.json,
        format_results(results),
    )
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _may_bind(ws: Workspace, host: str) -> bool:
    """Loopback always; any other address only once an API key exists, so the world never gets an open server."""
    from service.keys import KeyRing

    return _is_loopback(host) or KeyRing(ws).configured()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, made before any model loads, so a taken port is said at once."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise Unavailable(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from e
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sock


def cmd_serve(ws: Workspace, args: argparse.Namespace) -> int:
    if not _may_bind(ws, args.host):
        raise QualiaError(
            f"refusing to listen on {args.host} without API keys: bind to 127.0.0.1, "
            "or create a key first with `qualia keys create PROFILE`"
        )
    sock = _listen(args.host, args.port)

    import uvicorn
    from pydantic import ValidationError

    from service.allocator import return_freed_memory
    from service.app import create_app
    from service.settings import ServiceSettings

    return_freed_memory()

    try:
        settings = ServiceSettings(home=ws.root)
    except ValidationError as e:  # a QUALIA_* variable out of range: say which, as a flag would be told
        raise InvalidArgument("; ".join(f"QUALIA_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}"
                                        for err in e.errors())) from None  # fmt: skip
    # Off loopback, stay closed even if every key is revoked while the server runs.
    settings.require_keys = settings.require_keys or not _is_loopback(args.host)
    if args.torch_threads is not None:
        settings.torch_threads = args.torch_threads
    if args.batch_torch_threads is not None:
        settings.batch_torch_threads = args.batch_torch_threads
    settings.access_log = settings.access_log or args.access_log
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=args.host, port=args.port, log_level="info",
                                           access_log=settings.access_log))  # fmt: skip
    server.run(sockets=[sock])
    return 0


def cmd_keys_create(ws: Workspace, args: argparse.Namespace) -> int:
    from service.keys import create_key

    key = create_key(ws, args.profile)
    if not ws.profile_dir(args.profile).is_dir():
        log.warning("profile %r does not exist yet; the key will reach it once it does", args.profile)
    emit({"profile": args.profile, "key": key}, args.json, key)
    return 0


def cmd_keys_list(ws: Workspace, args: argparse.Namespace) -> int:
    from service.keys import list_keys

    keys = list_keys(ws)
    human = "\n".join(f"{k['prefix']}...  {k['profile']:<20} {k['created_at']}" for k in keys) or "(no keys)"
    emit({"keys": keys}, args.json, human)
    return 0


def cmd_keys_revoke(ws: Workspace, args: argparse.Namespace) -> int:
    from service.keys import revoke_key

    if not revoke_key(ws, args.prefix):
        raise NotFound(f"no key with prefix {args.prefix[:40]!r} (see `qualia keys list`)")
    emit({"revoked": args.prefix}, args.json, f"revoked {args.prefix}")
    return 0


def cmd_pretrain(ws: Workspace, args: argparse.Namespace) -> int:
    names = [f.name for f in dataclasses.fields(PretrainSettings)]
    settings = PretrainSettings(**{n: getattr(args, n) for n in names})
    if not args.out.parent.is_dir():
        raise InvalidArgument(f"--out {args.out}: folder {args.out.parent} does not exist")

    from qualia.pretrain import pretrain

    report = pretrain(args.out, settings, progress=_progress())
    figures = report["held_out"]
    human = (
        f"wrote {args.out} ({report['bytes']} bytes, sha256 {report['sha256'][:12]}…) in {report['seconds']:.0f} s\n"
        f"held-out generic t2i r10 {figures['pretrained']['t2i']['r10']:.3f} "
        f"(random init {figures['random_init']['t2i']['r10']:.3f}); "
        f"unseen-word cosine {figures['pretrained']['nonce_cosine']:.2f} "
        f"(random init {figures['random_init']['nonce_cosine']:.2f})"
    )
    emit(report, args.json, human)
    return 0


def cmd_demo(ws: Workspace, args: argparse.Namespace) -> int:
    from qualia.cli.demo import run_demo

    return run_demo(ws, profile=args.profile, epochs=args.epochs, as_json=args.json)


# -- parser ---------------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default where it has a value worth showing (not None, not an off switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value[:20]!r} is not a whole number") from None
    if not 1 <= k <= MAX_K:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_K}, not {k}")
    return k


def _threads(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, not {value[:20]!r}")
    return int(value)


def _train_flag(sp: argparse.ArgumentParser, name: str, metavar: str, **extra: Any) -> None:
    """A `qualia train` flag whose default and help come from ``TrainSettings`` (one source for both)."""
    spec = {f.name: f for f in dataclasses.fields(TrainSettings)}[name]
    sp.add_argument(f"--{name.replace('_', '-')}", dest=name, default=spec.default, metavar=metavar,
                    help=spec.metadata["help"], **extra)


def _nice_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--nice", type=int, choices=range(20), default=BACKGROUND_NICENESS, metavar="N",
                    help="CPU niceness to run at, 0 (as started) to 19 (the default: a server on the same cores "
                         "answers first; alone on the cores it runs as fast)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qualia", description="A personal CLIP: crawl, train, index, search.", formatter_class=_HelpFormatter
    )
    p.add_argument("--version", action="version", version=f"qualia {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, func: Any, help: str, profile: bool = True,
                json_flag: bool = True) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
        sp.set_defaults(func=func)
        if profile:
            sp.add_argument("profile", metavar="PROFILE", help="profile name ([a-z0-9][a-z0-9_-]{0,63})")
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        return sp

    sp = command(sub, "crawl", cmd_crawl, "crawl Substack and/or Pinterest into the profile's corpus")
    add_crawl_arguments(sp)

    sp = command(sub, "import", cmd_import, "add your own data export (or a folder of pictures) to the profile's corpus")
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--substack-export", metavar="PATH", help="a Substack writer's export: the ZIP or its folder")
    what.add_argument("--pinterest-export", metavar="PATH",
                      help="Pinterest's \"Request your data\" HTML file (pictures come from QUALIA_PINIMG_URL)")
    what.add_argument("--folder", metavar="DIR",
                      help="pictures with captions in a same-name .txt, or in captions.csv / captions.jsonl")
    sp.add_argument("--delay", type=float, default=1.0, metavar="SECONDS",
                    help="polite delay between picture downloads from one site, 0 for a local mirror")

    command(sub, "corpus", cmd_corpus, "show what the profile's corpus holds")

    sp = command(sub, "train", cmd_train, "train a new LoRA adapter version on the profile's corpus")
    _train_flag(sp, "backbone", "NAME")
    _train_flag(sp, "pretrained", "TAG|PATH")
    _train_flag(sp, "epochs", "N", type=int)
    _train_flag(sp, "patience", "N", type=int)
    _train_flag(sp, "rank", "R", type=int)
    _train_flag(sp, "lora_blocks", "N", type=int)
    sp.add_argument("--train-tokens", dest="train_tokens", action=argparse.BooleanOptionalAction, default=True,
                    help={f.name: f for f in dataclasses.fields(TrainSettings)}["train_tokens"].metadata["help"])
    _train_flag(sp, "token_epochs", "N", type=int)
    _train_flag(sp, "token_lr_scale", "X", type=float)
    _train_flag(sp, "device", "DEVICE", choices=("cpu", "cuda"))
    _train_flag(sp, "precision", "P", choices=PRECISIONS)
    _train_flag(sp, "text_negatives", "W", type=float)
    _train_flag(sp, "generic_replay", "N", type=int)
    _train_flag(sp, "generic_anchor", "W", type=float)
    _nice_flag(sp)

    sp = command(sub, "eval", cmd_eval, "held-out recall@k and modality gap, frozen backbone vs adapter")
    sp.add_argument("--adapter", default=None, metavar="VER", help="adapter version (default: the newest)")

    sp = command(sub, "index", cmd_index, "embed the corpus with backbone + adapter into a FAISS index")
    sp.add_argument("--adapter", default=None, metavar="VER|none",
                    help="adapter version (default: the newest); none: the backbone alone, to search right after a crawl")
    sp.add_argument("--backbone", default=None, metavar="NAME",
                    help="with --adapter none: open_clip model name, or qualia-tiny (default: as `train`)")
    sp.add_argument("--pretrained", default=None, metavar="TAG|PATH", help="with --adapter none: hub tag or weights file")
    sp.add_argument("--centering", choices=("auto", "on", "off"), default="auto",
                    help="subtract each modality's mean so words find pictures too; auto: as the adapter's evaluation says")
    sp.add_argument("--calibration", choices=("auto", "on", "off"), default="auto",
                    help="in searches over both, let the best picture and the best text compete as equals; "
                         "auto: as the adapter's evaluation says")
    _nice_flag(sp)

    sp = command(sub, "export", cmd_export, "write an adapter that open_clip (+ peft) loads without qualia")
    sp.add_argument("--adapter", default=None, metavar="VER", help="adapter version (default: the newest)")
    sp.add_argument("--out", required=True, metavar="PATH",
                    help="a new folder; with --merged a new .safetensors file")
    sp.add_argument("--merged", action="store_true",
                    help="one open_clip checkpoint, the base weights with the adapter merged in")

    sp = command(sub, "gc", cmd_gc, "remove leftovers of interrupted writes and versions nothing needs")
    sp.add_argument("--keep", type=int, default=DEFAULT_KEEP, metavar="N",
                    help="adapter and index versions to keep, newest first (and whatever they reference)")

    sp = command(sub, "search", cmd_search, "search the profile's index from the shell")
    sp.add_argument("text", nargs="?", metavar="TEXT", help="words to search with (or give --image)")
    sp.add_argument("--image", type=Path, metavar="PATH", help="search with a picture instead of words")
    sp.add_argument("--k", type=_k, default=10, metavar="N", help=f"how many results, 1 to {MAX_K}")
    sp.add_argument("--modality", choices=("image", "text", "any"), default="any", help="what kind of results")

    sp = command(sub, "serve", cmd_serve, "run the HTTP API", profile=False, json_flag=False)
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (off loopback needs an API key)")
    sp.add_argument("--port", type=int, default=8000, help="port to listen on")
    sp.add_argument("--torch-threads", type=_threads, default=None, metavar="N",
                    help="torch threads encoding a query alone (default 1, or QUALIA_TORCH_THREADS; 0: torch's own "
                         "default); one keeps latency steady beside other work on the cores (docs/benchmarks.md)")
    sp.add_argument("--batch-torch-threads", type=_threads, default=None, metavar="N",
                    help="torch threads encoding a batch of queries that arrived together (default: one per core, or "
                         "QUALIA_BATCH_TORCH_THREADS); batches come under load, when throughput counts")
    sp.add_argument("--access-log", action="store_true",
                    help="log a line for every request (or QUALIA_ACCESS_LOG=1); off by default: /metrics counts and "
                         "times requests either way, and the line costs each request time on the event loop")

    keys = sub.add_parser("keys", help="API keys for `qualia serve`, each scoped to one profile",
                          description="API keys for `qualia serve`, each scoped to one profile (stored hashed)",
                          formatter_class=_HelpFormatter)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    command(keys_sub, "create", cmd_keys_create, "print a new key for PROFILE (shown once)")
    command(keys_sub, "list", cmd_keys_list, "list keys by their public prefix and profile", profile=False)
    sp = command(keys_sub, "revoke", cmd_keys_revoke, "delete the key with this prefix", profile=False)
    sp.add_argument("prefix", metavar="PREFIX", help="the key's prefix as `qualia keys list` shows it")

    sp = command(sub, "pretrain", cmd_pretrain, f"pre-train the {TINY_BACKBONE} stand-in on procedural pictures "
                 "(a one-time job for the project's developers; its weights ship in the package)", profile=False)
    sp.add_argument("--out", type=Path, required=True, metavar="PATH",
                    help="weights file to write (.safetensors; a .json report goes beside it)")
    for spec in dataclasses.fields(PretrainSettings):
        sp.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, type=type(spec.default),
                        default=spec.default, help=spec.metadata["help"])

    sp = command(sub, "demo", cmd_demo, "run the whole job offline on the bundled sample site", profile=False)
    sp.add_argument("--profile", default="demo", help="profile to build (rebuilt from scratch)")
    sp.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs (default: as `train`)")
    return p


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot say by itself; exits 2 like any usage error."""
    if args.command == "search":
        if args.text and args.image:
            parser.error("search takes TEXT or --image PATH, not both")
        if not args.text and not args.image:
            parser.error("search needs TEXT or --image PATH")
    if args.command == "crawl" and not (args.substack or args.pinterest):
        parser.error("crawl needs at least one --substack HANDLE or --pinterest USER")


def _report_failure(e: BaseException) -> int:
    """The one place a failure becomes a line on stderr and an exit code."""
    if isinstance(e, QualiaError):
        sys.stderr.write(f"qualia: error: {e}\n")
        return e.exit_code
    if isinstance(e, OSError):  # the machine said no: disk full, permission denied...
        where = f": {e.filename}" if e.filename else ""
        sys.stderr.write(f"qualia: error: {e.strerror or type(e).__name__}{where}\n")
        return 1
    first = str(e).splitlines()[0][:200] if str(e) else ""
    sys.stderr.write(f"qualia: unexpected error ({type(e).__name__}{': ' + first if first else ''}); "
                     "rerun with QUALIA_DEBUG=1 for the traceback\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    configure_logging(logging.INFO if args.verbose else logging.WARNING, debug=bool(os.environ.get("QUALIA_DEBUG")))
    ws = Workspace.at(os.environ.get("QUALIA_HOME"))
    try:
        if getattr(args, "profile", None) is not None:
            check_profile_name(args.profile)
        return args.func(ws, args)
    except KeyboardInterrupt:
        sys.stderr.write("qualia: interrupted\n")
        return 130
    except Exception as e:
        if os.environ.get("QUALIA_DEBUG"):
            raise
        return _report_failure(e)


if __name__ == "__main__":
    sys.exit(main())
