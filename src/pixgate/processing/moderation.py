"""Blocked-term matching for prompt moderation: normalisation, an Aho-Corasick matcher and a
reloadable term list.

Terms and text are normalised the same way (`normalize`) before matching, so the usual ways
of slipping a term past a plain substring test all fail: full-width letters ("ＢＡＮＮＥＤ"),
case, invisible characters ("b\\u200banned", soft hyphens), spaces and punctuation between the
letters ("b.a n-n_e d", "违 禁"), and traditional Chinese for a simplified term or the other
way round ("違禁" / "违禁"). Because separators are removed, a term also matches across word
boundaries ("class" in "the classic"): blocked terms are meant to be specific.

`TermList` holds the operator's terms (inline ones from the settings plus a file, one term a
line) and can reload the file while the server runs (the server calls `reload()` on SIGHUP).
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import ahocorasick

from pixgate.processing.hanzi_variants import TO_SIMPLIFIED

# Unicode general categories removed by `normalize`, by first letter (P: punctuation,
# S: symbols, Z: separators) or in full (Cc: controls such as tab and newline, Cf: format
# characters such as zero-width spaces, joiners, bidi marks, the soft hyphen and U+FEFF).
_DROPPED_MAJOR = frozenset("PSZ")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf"})
# Invisible characters of other categories: the combining grapheme joiner, variation
# selectors, and the Hangul fillers (letters that draw nothing).
_DROPPED_CHARS = frozenset(
    [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]
)


def _kept(ch: str) -> bool:
    if ord(ch) in _DROPPED_CHARS:
        return False
    category = unicodedata.category(ch)
    return category[0] not in _DROPPED_MAJOR and category not in _DROPPED_CATEGORIES


def normalize(text: str) -> str:
    """`text` as terms are matched against it.

    In order: NFKC (full-width and other compatibility forms to their plain ones), case
    folding (then NFKC again, as Unicode recommends for caseless matching), traditional
    Chinese characters to simplified ones (`hanzi_variants`), then every whitespace,
    punctuation, symbol, control and format character (zero-width spaces and joiners, U+FEFF,
    the soft hyphen, bidi marks) and a few other invisible characters removed.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in folded.translate(TO_SIMPLIFIED) if _kept(ch))


class TermMatcher:
    """Finds configured terms in text, after normalising both (see `normalize`).

    Built once and never changed afterwards, so any number of threads may call `find` at
    the same time. Terms that normalise to nothing (only spaces or punctuation) are dropped;
    of terms that normalise to the same string, the first one configured is the one reported.
    """

    def __init__(self, terms: Iterable[str]) -> None:
        originals: dict[str, str] = {}
        for term in terms:
            key = normalize(term)
            if key and key not in originals:
                originals[key] = term
        self._count = len(originals)
        self._longest = max((len(key) for key in originals), default=0)
        self._automaton: ahocorasick.Automaton | None = None
        if originals:
            automaton = ahocorasick.Automaton()
            for key, original in originals.items():
                automaton.add_word(key, (len(key), original))
            automaton.make_automaton()
            self._automaton = automaton

    def __len__(self) -> int:
        """The number of distinct (normalised) terms matched."""
        return self._count

    def find(self, text: str | None) -> str | None:
        """The configured spelling of the term found in `text`: of the matches in the
        normalised text, the one that starts first, and of those the longest. None when
        `text` holds no term (or is empty or None)."""
        if self._automaton is None or not text:
            return None
        haystack = normalize(text)
        best: tuple[int, int, str] | None = None  # (start, -length, original)
        for end, (length, original) in self._automaton.iter(haystack):
            # Matches come in order of their end; none ending later can start before
            # end - longest + 1, so stop once that is past the best start found.
            if best is not None and end - self._longest + 1 > best[0]:
                break
            candidate = (end - length + 1, -length, original)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return None if best is None else best[2]


def load_terms(inline: Iterable[str], path: str | Path | None) -> list[str]:
    """The inline terms followed by those of the file at `path` (when given), each stripped,
    without blank ones or repeats (first occurrence kept, order preserved).

    The file is UTF-8 text with one term a line; blank lines and lines starting with `#`
    are skipped. ValueError naming the path when it cannot be read or decoded.
    """
    found: list[str] = [term.strip() for term in inline]
    if path is not None:
        try:
            content = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the blocked-terms file {str(path)!r}: {exc}") from exc
        for line in content.splitlines():
            term = line.strip()
            if term and not term.startswith("#"):
                found.append(term)
    return list(dict.fromkeys(term for term in found if term))


class TermList:
    """The blocked terms in force: the inline ones plus those of a file, reloadable.

    Construction reads the file (ValueError when it cannot). `reload()` reads it again and
    swaps in a new matcher; readers always see one whole matcher, the old or the new, and
    never wait for a reload.
    """

    def __init__(self, inline: Iterable[str] = (), path: str | Path | None = None) -> None:
        self._inline = list(inline)
        self._path = path
        self._lock = threading.Lock()
        self._terms = load_terms(self._inline, path)
        self._matcher = TermMatcher(self._terms)

    @property
    def path(self) -> str | Path | None:
        """The terms file, or None when there are only inline terms."""
        return self._path

    @property
    def terms(self) -> list[str]:
        """The terms loaded last (a copy), inline ones first."""
        return list(self._terms)

    def __len__(self) -> int:
        return len(self._matcher)

    def reload(self) -> int:
        """Read the file again and match its current terms from now on; the number of
        terms in force afterwards (distinct after normalisation). On a read error the
        previous terms stay in force and the ValueError is raised."""
        with self._lock:
            terms = load_terms(self._inline, self._path)
            matcher = TermMatcher(terms)
            self._terms, self._matcher = terms, matcher
            return len(matcher)

    def find(self, text: str | None) -> str | None:
        """The configured spelling of the first term in `text` (see `TermMatcher.find`),
        or None when it holds none."""
        return self._matcher.find(text)
