"""The `qualia` command line: the composition root, the one place that wires crawler, library and service.

Exit codes: 0 done, 1 failure (one-line reason on stderr), 2 usage error. `--json` prints exactly one
JSON object on stdout. Heavy imports (torch, scrapy, fastapi) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from qualia import workspace

log = logging.getLogger("qualia")


class CommandError(Exception):
    """A failure to report as one line on stderr, exit code 1."""


def _emit(obj: Any, as_json: bool, human: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")


def _progress() -> bool:
    return sys.stderr.isatty()


# -- formatting -----------------------------------------------------------------------------------


def format_counts(counts: dict[str, Any]) -> str:
    items = counts["items"]
    lines = [
        f"items      {sum(items.values()):>6}  ({', '.join(f'{k} {v}' for k, v in sorted(items.items()))})",
        f"by degree  {'  '.join(f'{d}: {n}' for d, n in sorted(counts['by_degree'].items()))}",
        f"by kind    {'  '.join(f'{k}: {n}' for k, n in sorted(counts.get('by_kind', {}).items()))}",
        f"images     {counts['images']:>6}  (from {counts.get('image_urls', 0)} URLs)",
        f"pairs      {counts['pairs']:>6}",
        f"edges      {counts['edges']:>6}",
    ]
    return "\n".join(lines)


def format_eval(report: dict[str, Any]) -> str:
    lines = [f"held-out pairs: {report['pairs']}", f"{'':10}{'t2i r@1':>9}{'r@5':>7}{'r@10':>7}{'i2t r@1':>10}{'r@5':>7}{'r@10':>7}{'gap':>8}"]
    for name in ("base", "adapter"):
        m = report[name]
        t, i = m["t2i"], m["i2t"]
        lines.append(
            f"{name:10}{t['r1']:9.3f}{t['r5']:7.3f}{t['r10']:7.3f}{i['r1']:10.3f}{i['r5']:7.3f}{i['r10']:7.3f}{m['gap']:8.3f}"
        )
    return "\n".join(lines)


def format_results(results: list[dict[str, Any]]) -> str:
    lines = []
    for rank, r in enumerate(results, 1):
        text = (r.get("text") or "").replace("\n", " ")
        if len(text) > 70:
            text = text[:67] + "..."
        where = r.get("image_url") if r["modality"] == "image" else r.get("source_url")
        lines.append(f"{rank:>3}. {r['score']:.3f}  {r['modality']:<5} d{r.get('degree', '?')}  {text}  <{where}>")
    return "\n".join(lines) or "(no results)"


# -- commands -------------------------------------------------------------------------------------


def cmd_crawl(args: argparse.Namespace) -> int:
    from crawler.run import crawl

    workspace.check_profile_name(args.profile)
    stats = crawl(
        args.profile,
        substack=args.substack or [],
        pinterest=args.pinterest or [],
        depth=args.depth,
        max_items=args.max_items,
        delay=args.delay,
        progress=_progress(),
    )
    counts = corpus_counts(args.profile)
    _emit({"crawl": stats, "corpus": counts}, args.json, format_counts(counts))
    return 0


def corpus_counts(profile: str) -> dict[str, Any]:
    from qualia.corpus import Corpus
    from qualia.pairs import corpus_pairs

    path = workspace.corpus_path(profile)
    if not path.exists():
        raise CommandError(f"profile {profile!r} has no corpus yet: run `qualia crawl {profile} ...` first")
    with Corpus(path, readonly=True) as corpus:
        counts = corpus.counts()
        counts["pairs"] = len(corpus_pairs(corpus))
    return counts


def cmd_corpus(args: argparse.Namespace) -> int:
    counts = corpus_counts(args.profile)
    _emit(counts, args.json, format_counts(counts))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from qualia.train import TrainSettings, train_profile

    workspace.check_profile_name(args.profile)
    if not workspace.corpus_path(args.profile).exists():
        raise CommandError(f"profile {args.profile!r} has no corpus yet: run `qualia crawl {args.profile} ...` first")
    given = {"backbone": args.backbone, "epochs": args.epochs, "rank": args.rank}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = TrainSettings(pretrained=args.pretrained, device=args.device, **overrides)
    folder = train_profile(args.profile, settings, progress=_progress())
    # training already measured the held-out pairs; `qualia eval` measures again from the files
    report = json.loads((folder / "metrics.json").read_text())
    _emit({"adapter_version": folder.name, **report}, args.json, f"adapter {folder.name}\n{format_eval(report)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from qualia.evaluate import evaluate_profile

    workspace.check_profile_name(args.profile)
    report = evaluate_profile(args.profile, args.adapter)
    _emit(report, args.json, format_eval(report))
    return 0


def build_profile_index(profile: str, adapter_version: str | None) -> Path:
    from qualia.backbone import load_backbone
    from qualia.embed import Encoder
    from qualia.index import build_index
    from qualia.lora import adapters_dir, read_adapter_meta

    adapter = workspace.resolve_version(adapters_dir(profile), adapter_version)
    meta = read_adapter_meta(adapter)
    encoder = Encoder.load(load_backbone(meta["backbone"], meta.get("pretrained")), adapter)
    return build_index(profile, encoder, adapter.name, progress=_progress())


def cmd_index(args: argparse.Namespace) -> int:
    workspace.check_profile_name(args.profile)
    try:
        folder = build_profile_index(args.profile, args.adapter)
    except FileNotFoundError as e:
        raise CommandError(f"{e}: train an adapter first with `qualia train {args.profile}`") from e
    manifest = json.loads((folder / "manifest.json").read_text())
    _emit(manifest, args.json, f"index {folder.name}: {manifest['count']} vectors of dim {manifest['dim']}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from qualia.search import ProfileSearcher, load_image_file

    workspace.check_profile_name(args.profile)
    started = time.perf_counter()
    query_image = load_image_file(args.image) if args.image else None
    searcher = ProfileSearcher.load(args.profile)
    if query_image is not None:
        results = searcher.search_image(query_image, k=args.k, modality=args.modality)
    else:
        results = searcher.search_text(args.text, k=args.k, modality=args.modality)
    took_ms = (time.perf_counter() - started) * 1000
    _emit(
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


def _may_bind(host: str, root: Path | None = None) -> bool:
    """Loopback always; any other address only once an API key exists, so the world never gets an open server."""
    from qualia.keys import any_keys

    return _is_loopback(host) or any_keys(root)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.settings import ServiceSettings

    settings = ServiceSettings()
    if not _may_bind(args.host, settings.root):
        raise CommandError(
            f"refusing to listen on {args.host} without API keys: bind to 127.0.0.1, "
            "or create a key first with `qualia keys create PROFILE`"
        )
    # Off loopback, stay closed even if every key is revoked while the server runs.
    settings.require_keys = settings.require_keys or not _is_loopback(args.host)

    import uvicorn

    from service.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from qualia.keys import create_key

    key = create_key(args.profile)
    if not workspace.profile_dir(args.profile).is_dir():
        log.warning("profile %r does not exist yet; the key will reach it once it does", args.profile)
    _emit({"profile": args.profile, "key": key}, args.json, key)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from qualia.keys import list_keys

    keys = list_keys()
    human = "\n".join(f"{k['prefix']}...  {k['profile']:<20} {k['created_at']}" for k in keys) or "(no keys)"
    _emit({"keys": keys}, args.json, human)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from qualia.keys import revoke_key

    if not revoke_key(args.prefix):
        raise CommandError(f"no key with prefix {args.prefix!r} (see `qualia keys list`)")
    _emit({"revoked": args.prefix}, args.json, f"revoked {args.prefix}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from qualia.cli.demo import run_demo

    return run_demo(profile=args.profile, epochs=args.epochs, as_json=args.json)


# -- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qualia", description="A personal CLIP: crawl, train, index, search.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help: str, profile: bool = True, json_flag: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        if profile:
            sp.add_argument("profile", metavar="PROFILE", help="profile name ([a-z0-9][a-z0-9_-]{0,63})")
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        return sp

    sp = command("crawl", cmd_crawl, "crawl Substack and/or Pinterest into the profile's corpus")
    sp.add_argument("--substack", action="append", metavar="HANDLE", help="a Substack handle (repeatable)")
    sp.add_argument("--pinterest", action="append", metavar="USER", help="a Pinterest username (repeatable)")
    sp.add_argument("--depth", type=int, choices=(1, 2), default=2, help="hops from the person (default 2)")
    sp.add_argument("--max-items", type=int, default=None, metavar="N", help="stop after N posts and pins")
    sp.add_argument("--delay", type=float, default=1.0, metavar="SECONDS", help="polite per-domain delay (default 1)")

    command("corpus", cmd_corpus, "show what the profile's corpus holds")

    sp = command("train", cmd_train, "train a new LoRA adapter version on the profile's corpus")
    sp.add_argument("--backbone", default=None, metavar="NAME", help="open_clip model name, or qualia-tiny (default ViT-B-32)")
    sp.add_argument("--pretrained", default=None, metavar="TAG|PATH", help="pretrained tag from the hub, or a local weights file")
    sp.add_argument("--epochs", type=int, default=None, metavar="N")
    sp.add_argument("--rank", type=int, default=None, metavar="R", help="LoRA rank")
    sp.add_argument("--device", choices=("cpu", "cuda"), default="cpu")

    sp = command("eval", cmd_eval, "held-out recall@k and modality gap, frozen backbone vs adapter")
    sp.add_argument("--adapter", default=None, metavar="VER", help="adapter version (default: newest)")

    sp = command("index", cmd_index, "embed the corpus with backbone + adapter into a FAISS index")
    sp.add_argument("--adapter", default=None, metavar="VER", help="adapter version (default: newest)")

    sp = command("search", cmd_search, "search the profile's index from the shell")
    sp.add_argument("text", nargs="?", metavar="TEXT")
    sp.add_argument("--image", type=Path, metavar="PATH", help="search with a picture instead of text")
    sp.add_argument("--k", type=int, default=10, metavar="N")
    sp.add_argument("--modality", choices=("image", "text", "any"), default="any")

    sp = command("serve", cmd_serve, "run the HTTP API and web page", profile=False, json_flag=False)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)

    keys = sub.add_parser("keys", help="API keys for `qualia serve`, each scoped to one profile",
                          description="API keys for `qualia serve`, each scoped to one profile (stored hashed)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    sp = keys_sub.add_parser("create", help="print a new key for PROFILE (shown once)")
    sp.set_defaults(func=cmd_keys_create)
    sp.add_argument("profile", metavar="PROFILE", help="profile name ([a-z0-9][a-z0-9_-]{0,63})")
    sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sp = keys_sub.add_parser("list", help="list keys by their public prefix and profile")
    sp.set_defaults(func=cmd_keys_list)
    sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sp = keys_sub.add_parser("revoke", help="delete the key with this prefix")
    sp.set_defaults(func=cmd_keys_revoke)
    sp.add_argument("prefix", metavar="PREFIX", help="the key's prefix as `qualia keys list` shows it")
    sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    sp = command("demo", cmd_demo, "run the whole job offline on the bundled sample site", profile=False)
    sp.add_argument("--profile", default="demo", help="profile to build (default: demo)")
    sp.add_argument("--epochs", type=int, default=None, metavar="N")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "search":
        if bool(args.text) == bool(args.image):
            parser.error("search needs either TEXT or --image PATH")
        if not 1 <= args.k <= 100:
            parser.error("--k must be between 1 and 100")
    if args.command == "crawl" and not (args.substack or args.pinterest):
        parser.error("crawl needs at least one --substack HANDLE or --pinterest USER")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        sys.stderr.write("qualia: interrupted\n")
        return 130
    except Exception as e:  # one line for the user; QUALIA_DEBUG=1 keeps the traceback
        if os.environ.get("QUALIA_DEBUG"):
            raise
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write(f"qualia: error: {reason}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
