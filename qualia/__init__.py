"""qualia: a personal CLIP adapter per person, from the traces of their taste on the web."""

__version__ = "0.1.0"
