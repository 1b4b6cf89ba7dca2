"""The sample person's own data exports, as the sites would e-mail them (docs/sources.md, "Exports").

``substack_export`` writes a writer's export ZIP for her publication (``posts.csv`` with drafts, a
paid post and a thread, one HTML body per post in the export's markup, and the mailing-list and
per-post statistics files a real export carries, which an importer must never read);
``pinterest_export`` writes the "Request your data" HTML file for her pins (with ``No data`` values,
trailing commas, an IP address per pin and further sections). Pictures are referenced, not included:
the sample site serves them.
"""

from __future__ import annotations

import csv
import html
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

from samplesite.server import SampleSite

# A reader's address in the mailing list: an importer that reads that file would store it.
PRIVATE_MARKER = "reader-private@example.org"


def _figure(src: str, alt: str, caption: str) -> str:
    attrs = html.escape(json.dumps({"src": src, "alt": alt or None, "title": None, "height": 96, "width": 96}))
    resized = src.replace("/w_1456,c_limit/", "/w_424,c_limit/")
    return ('<div class="captioned-image-container"><figure><a class="image-link image2" href="' + html.escape(src)
            + '"><div class="image2-inset"><picture><img src="' + html.escape(resized) + '" srcset="'
            + html.escape(resized) + ' 424w" data-attrs="' + attrs + '" alt="' + html.escape(alt) + '"></picture>'
            + "</div></a>" + (f'<figcaption class="image-caption">{html.escape(caption)}</figcaption>' if caption else "")
            + "</figure></div>")


def substack_export(site: SampleSite, out: Path, old_header: bool = False) -> dict[str, int]:
    """Write her publication's export ZIP to ``out``; returns what an importer should find
    (published posts, drafts, body pictures)."""
    pub = site.world.publications[site.world.person.writes[0]]
    header = ["post_id", "post_date", "is_published", "email_sent_at", "inbox_sent_at", "type", "audience", "title",
              "subtitle", "podcast_url"]
    if old_header:
        header.remove("inbox_sent_at")  # older exports lack it
    rows, bodies = [], {}
    figures = 0
    for k, post in enumerate(pub.posts):
        key = f"{post.id}.{post.slug}"
        audience = "only_paid" if k == 1 else "everyone"
        rows.append({"post_id": key, "post_date": post.post_date, "is_published": "TRUE" if k % 2 else "true",
                     "email_sent_at": post.post_date, "inbox_sent_at": post.post_date,
                     "type": "thread" if k == 2 else "newsletter", "audience": audience, "title": post.title,
                     "subtitle": post.subtitle if k != 3 else "", "podcast_url": ""})
        parts = []
        for i, paragraph in enumerate(post.paragraphs):
            parts.append(f"<p>{html.escape(paragraph)}</p>")
            if i < len(post.figures):
                f = post.figures[i]
                parts.append(_figure(site.url(f.url), f.alt, f.caption))
        for f in post.figures[len(post.paragraphs):]:
            parts.append(_figure(site.url(f.url), f.alt, f.caption))
        figures += len(post.figures)
        bodies[f"posts/{key}.html"] = "\n".join(parts)
    drafts = [{"post_id": f"{9_000_000 + n}.draft-{n}", "post_date": "", "is_published": "false", "type": "newsletter",
               "audience": "everyone", "title": f"Unfinished thought {n}", "subtitle": ""} for n in range(2)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows + drafts)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("posts.csv", buffer.getvalue())
        for name, body in bodies.items():
            z.writestr(name, body)
        z.writestr("email_list.quiethours.csv", f"email,active_subscription\n{PRIVATE_MARKER},true\n")
        z.writestr(f"posts/{rows[0]['post_id']}.opens.csv", f"email,timestamp\n{PRIVATE_MARKER},2024-06-01\n")
    return {"published": len(rows), "drafts": len(drafts), "figures": figures}


def pinterest_export(site: SampleSite, out: Path) -> dict[str, int]:
    """Write her "Request your data" HTML file to ``out``; returns what an importer should find."""
    world = site.world
    blocks = []
    for n, pin_id in enumerate(world.own_pin_ids):
        pin = world.pins[pin_id]
        story = [p.url for p in pin.story if p.url != pin.orig_url]
        media = "[" + ", ".join(f"{{'image': '{url.rsplit('/', 1)[1].rsplit('.', 1)[0]}'}}" for url in story) + "]"
        when = datetime.strptime(pin.created_at, "%a, %d %b %Y %H:%M:%S %z").strftime("%Y/%m/%d %H:%M:%S")
        title = html.escape(pin.title) if pin.title else "No data"
        lines = [
            f"Title: {title}" + ("," if n % 5 == 0 else ""),  # some values end with a comma
            f"Details: {html.escape(pin.description)}",
            f"Image: {pin.picture.key}",
            "Is Native: No data",
            f"Board Id: {pin.board_id}",
            f"Board Name: {html.escape(pin.board_name)}",
            f"Is Video: {'true' if pin.video_url else 'false'}",
            f"Ip Address: 203.0.113.{n % 250}",
            f"Username: {pin.pinner}",
            f"Alt Text: {html.escape(pin.alt_text) if pin.alt_text else 'No data'}",
            f'Canonical Link: <a href="{html.escape(pin.link)}">{html.escape(pin.link)}</a>',
            f"Story Pin Media: {html.escape(media) if story else 'No data'}",
            "Video: No data",
            f"Created at: {when}",
            "Alive: true", "Is a repin: false", "Private: false",
        ]
        blocks.append(f'<a href="https://www.pinterest.com/pin/{pin_id}/">https://www.pinterest.com/pin/{pin_id}/</a>'
                      "<br>" + "<br>".join(lines) + "<br><br>")
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Your Pinterest data</title></head><body>"
            "<h1>Profile</h1><p>Username: " + world.pinterest_username + "</p>"
            "<h1>Pins</h1>" + "".join(blocks) +
            "<h1>Boards Followed</h1><p>No data</p><h1>Search History</h1><p>quiet morning</p></body></html>")
    out.write_text(page, encoding="utf-8")
    return {"pins": len(world.own_pin_ids), "boards": len({world.pins[p].board_id for p in world.own_pin_ids})}
