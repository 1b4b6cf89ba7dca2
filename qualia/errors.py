"""One family of errors for everything qualia refuses or cannot do.

Each class says how the two front doors answer it: ``exit_code`` for the command line (1 a failure,
2 a usage error, as for argparse) and ``http_status`` for the service. The CLI and the service map a
``QualiaError`` in one place each; anything else that escapes is a bug and is reported as one.

The message is for a person: one line that says what is wrong and, where there is one, what to do.
No object reprs, no bare errno lines.
"""

from __future__ import annotations


class QualiaError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1
    http_status = 500

    def __str__(self) -> str:
        text = super().__str__()
        return text.splitlines()[0] if text else type(self).__name__


# -- the caller asked for something malformed (exit 2: like a usage error) -----------------------


class InvalidArgument(QualiaError, ValueError):
    """A value given by the caller is out of range or malformed (settings, names, depths...)."""

    exit_code = 2
    http_status = 422


class InvalidProfileName(InvalidArgument):
    """Not a profile name; never used as a path. The service answers it like a missing profile."""

    http_status = 404


# -- something the caller named does not exist (yet) ---------------------------------------------


class NotFound(QualiaError, LookupError):
    http_status = 404


class MissingStep(NotFound):
    """A profile lacks an artifact an earlier command makes (corpus, adapter, index)."""


class NoIndex(MissingStep):
    """The profile has no built index (or no such index version)."""


# -- input that is not what it claims to be ------------------------------------------------------


class InvalidInput(QualiaError, ValueError):
    http_status = 400


class InvalidImage(InvalidInput):
    """Bytes that are not a readable picture (or are too large to be one we keep)."""


class ImageTooLarge(InvalidImage):
    http_status = 413


# -- an artifact exists but cannot be used as it is ---------------------------------------------


class Conflict(QualiaError):
    http_status = 409


class NotEnoughData(Conflict):
    """Too little in the corpus for what was asked (training needs pairs, an index needs content)."""


class AdapterMismatch(Conflict):
    """The adapter was trained on other base weights than the backbone it is being loaded onto."""


class IndexMismatch(Conflict):
    """The backbone or adapter available now is not the one the index was built with."""


class CorruptArtifact(Conflict):
    """An adapter or index folder that is incomplete, unreadable, or does not match its manifest."""


class CorruptIndex(CorruptArtifact):
    pass


# -- the environment cannot provide what is needed ------------------------------------------------


class Unavailable(QualiaError):
    http_status = 503


class BackboneUnavailable(Unavailable):
    """The backbone's architecture or weights cannot be had here (unknown name, offline hub...)."""


class CrawlFailed(Unavailable):
    """The crawl could not run at all (as opposed to pages that failed inside it)."""
