"""Substack: a person's profile, the publications they write for and read, those publications' posts,
and (one hop further) the publications those recommend. Endpoint shapes: docs/sources.md."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

from scrapy.http import Request, Response

from crawler.items import ImageRef, Record
from crawler.parsing import numeric_id, read_body
from crawler.spiders import CorpusSpider
from crawler.urls import api_url, is_web_url
from qualia.text import join_lines

SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
SLUG = re.compile(r"^[A-Za-z0-9_-]{1,300}$")


class SubstackSpider(CorpusSpider):
    name = "substack"
    source = "substack"

    def configure(self, settings: Any) -> None:
        self.root = settings.get("QUALIA_SUBSTACK_URL") or "https://substack.com"
        self.publication_template = settings.get("QUALIA_SUBSTACK_PUBLICATION_URL") or None
        self.archive_page = settings.getint("QUALIA_ARCHIVE_PAGE_SIZE", 12)

    def publication_base(self, pub: dict[str, Any]) -> str | None:
        """Where a publication's API lives: the configured template wins over its custom domain."""
        subdomain = pub.get("subdomain")
        if not isinstance(subdomain, str) or not SUBDOMAIN.fullmatch(subdomain):
            return None
        if self.publication_template:
            return self.publication_template.replace("{subdomain}", subdomain)
        domain = pub.get("custom_domain")
        if isinstance(domain, str) and DOMAIN.fullmatch(domain.lower()):
            return f"https://{domain.lower()}"
        return f"https://{subdomain}.substack.com"

    async def start(self) -> AsyncIterator[Request]:
        for handle in self.names:
            url = api_url(self.root, f"api/v1/user/{quote(handle, safe='')}/public_profile")
            yield self.get(url, self.parse_profile, meta={"degree": 0, "handle": handle}, dont_filter=True)

    # -- the person -------------------------------------------------------------------------

    def parse_profile(self, response: Response) -> Iterator[Record | Request]:
        profile = self.load_json(response, dict)
        if profile is None:
            return
        handle = profile.get("handle") if isinstance(profile.get("handle"), str) else response.meta["handle"]
        user_id = f"substack:user:{handle}"
        yield Record(
            user_id, "substack", "user", 0, title=profile.get("name") or handle, text=join_lines(profile.get("bio")),
            url=api_url(self.root, f"@{handle}"), complete=True,
            data={k: profile.get(k) for k in ("id", "name", "handle", "bio", "photo_url")},
        )
        for relation, key in (("subscribes", "subscriptions"), ("writes", "publicationUsers")):
            for entry in profile.get(key) or []:
                if isinstance(entry, dict):
                    yield from self.publication(entry.get("publication"), 1, (user_id, relation))

    # -- publications -----------------------------------------------------------------------

    def publication(self, pub: Any, degree: int, via: tuple[str, str]) -> Iterator[Record | Request]:
        pub_id = numeric_id(pub.get("id")) if isinstance(pub, dict) else None
        if pub_id is None:
            self.logger.warning("skipping a publication without an id: %.200r", pub)
            return
        base = self.publication_base(pub)
        if base is None:
            self.logger.warning("skipping publication %s: no usable subdomain", pub_id)
            return
        node = f"substack:publication:{pub_id}"
        yield Record(node, "substack", "publication", degree, via=via, title=pub.get("name"), url=base,
                     data={"id": pub_id, **{k: pub.get(k) for k in ("name", "subdomain", "custom_domain")}})
        if not self.first_expansion(node, degree):
            return
        meta = {"degree": degree, "pub_id": pub_id, "base": base}
        yield self.get(self.archive_url(base, 0), self.parse_archive,
                       meta={**meta, "offset": 0, **self.once("archive", node, paged=True)})
        yield self.get(api_url(base, "api/v1/publication/users/ranked", {"public": "true"}), self.parse_authors,
                      meta=meta)
        if degree < self.depth:
            yield self.get(api_url(base, f"api/v1/recommendations/from/{pub_id}"), self.parse_recommendations,
                          meta=meta)

    def archive_url(self, base: str, offset: int) -> str:
        return api_url(base, "api/v1/archive", {"sort": "new", "offset": offset, "limit": self.archive_page})

    def parse_archive(self, response: Response) -> Iterator[Record | Request]:
        posts = self.load_json(response, list)
        if posts is None:
            return
        meta = response.meta
        listed = []
        for post in posts:
            if isinstance(post, dict):
                for out in self.post(post, meta, complete=False):
                    if isinstance(out, Record) and out.kind == "post":
                        listed.append(out.id)
                    yield out
        # A page shorter than asked for is the last one (an empty page too).
        if len(posts) >= self.archive_page:
            offset = meta["offset"] + len(posts)
            yield self.get(self.archive_url(meta["base"], offset), self.parse_archive,
                           meta={"degree": meta["degree"], "pub_id": meta["pub_id"], "base": meta["base"],
                                 "offset": offset, **self.next_meta(response, listed)})
        else:
            yield from self.ended(response)

    def parse_recommendations(self, response: Response) -> Iterator[Record | Request]:
        recs = self.load_json(response, list)
        if recs is None:
            return
        src = f"substack:publication:{response.meta['pub_id']}"
        for rec in recs:
            if isinstance(rec, dict):
                yield from self.publication(rec.get("recommendedPublication"), response.meta["degree"] + 1,
                                            (src, "recommends"))

    def parse_authors(self, response: Response) -> Iterator[Record]:
        users = self.load_json(response, list)
        if users is None:
            return
        authors = [{"handle": u.get("handle"), "name": u.get("name")} for u in users if isinstance(u, dict)]
        yield Record(f"substack:publication:{response.meta['pub_id']}", "substack", "publication",
                     response.meta["degree"], data={"authors": authors})

    # -- posts ------------------------------------------------------------------------------

    def post(self, post: dict[str, Any], meta: dict[str, Any], complete: bool) -> Iterator[Record | Request]:
        post_id = numeric_id(post.get("id"))
        if post_id is None:
            self.logger.warning("skipping a post without an id in %s", meta["base"])
            return
        degree = meta["degree"]
        # unknown (None) when the answer does not say: the merge then keeps what the listing said
        audience = post.get("audience") if isinstance(post.get("audience"), str) else None
        paywalled = None if audience is None else audience == "only_paid"
        images = []
        if is_web_url(post.get("cover_image")):
            images.append(ImageRef(post["cover_image"], "cover", position=0))
        body_text = None
        if complete and isinstance(post.get("body_html"), str):
            body_text, figures = read_body(post["body_html"])
            images += [ImageRef(url, "body", alt, caption, position=i + 1, context=context)
                       for i, (url, alt, caption, context) in enumerate(figures)]
        data = {k: post.get(k) for k in ("slug", "subtitle", "audience", "canonical_url")}
        data.update(id=post_id, publication_id=numeric_id(post.get("publication_id")), paywalled=paywalled,
                    truncated=paywalled and complete if paywalled is not None else None)
        record = Record(
            f"substack:post:{post_id}", "substack", "post", degree,
            via=(f"substack:publication:{meta['pub_id']}", "publishes"), title=post.get("title"),
            text=join_lines(post.get("subtitle"), body_text),
            url=post["canonical_url"] if is_web_url(post.get("canonical_url")) else None,
            published_at=post.get("post_date"), data=data, images=images, complete=complete,
        )
        yield from self.with_pictures(record)
        slug = post.get("slug")
        if not complete and isinstance(slug, str) and SLUG.fullmatch(slug):
            yield self.get(api_url(meta["base"], f"api/v1/posts/{slug}"), self.parse_post,
                           meta={**{k: meta[k] for k in ("degree", "pub_id", "base")},
                                 "qualia_done": f"detail:{record.id}"})

    def parse_post(self, response: Response) -> Iterator[Record | Request]:
        post = self.load_json(response, dict)
        if post is not None:
            yield from self.post(post, response.meta, complete=True)

