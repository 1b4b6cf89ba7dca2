"""A bundled, offline stand-in for one person's Substack and Pinterest (for tests and the demo).

``SampleSite`` serves the real endpoint shapes on 127.0.0.1; ``pictures.draw_picture`` draws the
person's private visual vocabulary; ``content.World`` is the content model a crawl is checked against.
"""

from samplesite.pictures import STYLE_CUES, STYLE_LOOKS, STYLES, SUBJECTS, draw_picture
from samplesite.server import SampleSite

__all__ = ["SampleSite", "STYLES", "STYLE_CUES", "STYLE_LOOKS", "SUBJECTS", "draw_picture"]
