"""Captions for the Open Clip Art Library images that Debian ships (`openclipart-png`, whose files
mirror `openclipart-svg`): each PNG is paired with its SVG's RDF metadata.

The metadata is written by hundreds of authors and is uneven, so every caption follows fixed rules:
- **Title** (`dc:title`): kept unless it is collection boilerplate, i.e. it matches one of
  `BOILERPLATE` ("Part of the Flat Icon Collection (...)", "Lemon SVG theme", "Etiquette Icons",
  "Clipart by AUTHOR - file", ...) or is shared by `COLLECTION_SIZE` or more images (a title naming
  a collection, not an image). A dropped or missing title is replaced by the file name's words.
- **File name words**: the PNG's stem with the author's name removed (files are named
  `title_AUTHOR-PREFIX_NN`), numbering and tokens holding digits dropped.
- **Description** (`dc:description`): the first sentence, at most `MAX_DESCRIPTION_WORDS` words;
  dropped when it holds an address or URL, repeats the title, matches `BOILERPLATE`, or is shared by
  `COLLECTION_SIZE` or more images.
- **Keywords** (`rdf:li` of `dc:subject`): lower-cased, underscores to spaces, without the author's
  name, tokens holding digits or hashes, the library's own tags (`STOP_KEYWORDS`), and words the
  title or description already say; at most `MAX_KEYWORDS`, in the author's order.
- Caption: `name: description. keyword, keyword, ...`, words compared case-insensitively so none
  repeats. Text in another language (some authors wrote Italian or French) is kept as written.
- No author name enters a caption: the creator's and rights holder's names are removed from every
  part, and a part that is only a name is dropped.

Everything is a pure function of the two package trees, so the same package versions give the same
captions.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

CLIPART_PNG_ROOT = Path("/usr/share/openclipart/png")
CLIPART_SVG_ROOT = Path("/usr/share/openclipart/svg")

NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "cc": "http://web.resource.org/cc/"}
BOILERPLATE = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"^part of (the )?.*collection",
    r"\b(svg )?theme$",
    r"\bicon ?set\b",
    r"^etiquette icons$",
    r"^clip ?art by ",
    r"\bcliparts?$",
    r"^aiga[_ ]symbol[_ ]signs$",
    r"\bs[iu]bmission$",
    r"^eps converted from",
    r"^hash\(0x[0-9a-f]+\)$",
))
"""Titles and descriptions that name a collection, a theme or a tool rather than the image."""
COLLECTION_SIZE = 40
"""A title or description shared by this many images names their collection."""
STOP_KEYWORDS = frozenset({
    "hash", "icon", "icons", "theme", "lemon theme icon", "mapsym", "map symbol", "signs and symbols", "unsorted",
    "mimeicon", "appicon", "united nations member", "clip art", "clipart", "svg", "png", "image", "inkscape",
    "openclipart", "open clip art library", "ocal", "media", "public domain", "externalsource",
})
"""The library's own filing tags, not descriptions of the picture."""
MAX_DESCRIPTION_WORDS = 25
MAX_KEYWORDS = 6
_NUMBERED = re.compile(r"[0-9]")
_NUMBERING = re.compile(r"([_-]*\d+[a-z]?|[_-]+)+$")
_STOPWORDS = frozenset({"a", "an", "the", "of", "and", "or", "in", "on", "with", "this", "is", "it", "for", "to"})
_ADDRESS = re.compile(r"(https?://|www\.|@[a-z0-9-]+\.)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class ClipartMeta:
    """What the SVG says about one image; None / empty where it says nothing."""

    path: str  # relative to the package root, without extension: "science/astronomy/full_moon_dan_gerhards_01"
    title: str | None
    description: str | None
    keywords: tuple[str, ...]
    authors: tuple[str, ...]

    @property
    def category(self) -> str:
        return self.path.split("/", 1)[0]


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return " ".join(element.text.split()) or None


def read_svg_meta(svg: Path, rel: str) -> ClipartMeta:
    """The `cc:Work` metadata of an SVG (parsing stops at the end of its `metadata` element); a file
    without metadata, or one that does not parse, gives an empty record: the file name still captions it."""
    try:
        for _, element in ET.iterparse(svg, events=("end",)):
            if element.tag.endswith("}metadata"):
                work = element.find(".//cc:Work", NS)
                if work is None:
                    break
                authors = tuple(a for a in (_text(e) for e in work.findall("dc:creator//dc:title", NS) + work.findall("dc:rights//dc:title", NS)) if a)
                keywords = tuple(k for k in (_text(e) for e in work.findall("dc:subject//rdf:li", NS)) if k)
                return ClipartMeta(rel, _text(work.find("dc:title", NS)), _text(work.find("dc:description", NS)), keywords, authors)
    except (ET.ParseError, OSError):
        pass
    return ClipartMeta(rel, None, None, (), ())


def slug(text: str) -> str:
    """Lower-case with every character outside a-z and 0-9 turned into `_`, as the package names files."""
    return re.sub(r"[^a-z0-9]", "_", text.lower())


def filename_words(stem: str, authors: tuple[str, ...]) -> str:
    """The file name's words: `cigno_architetto_frances_01` by "Architetto Francesco Rollandin" -> "cigno"."""
    name = _NUMBERING.sub("", stem.lower())
    for author in authors:
        author_slug = slug(author)
        for start in (i + 1 for i, ch in enumerate(name) if ch in "_-"):
            tail = name[start:].strip("_-")
            if len(tail) >= 3 and author_slug.startswith(tail):
                name = name[:start]
                break
    words = [re.sub(r"\d+$", "", w) for w in re.split(r"[_\-\s.+]+", name)]
    words = [w for w in words if len(w) >= 2 and not _NUMBERED.search(w) and w not in STOP_KEYWORDS]
    return " ".join(words)


def _without_authors(text: str, authors: tuple[str, ...]) -> str:
    for author in authors:
        text = re.sub(re.escape(author), " ", text, flags=re.IGNORECASE)
    return " ".join(text.split()).strip(" -:,;")


def _is_boilerplate(text: str, counts: Counter) -> bool:
    return counts[text.lower()] >= COLLECTION_SIZE or any(p.search(text) for p in BOILERPLATE)


def _first_sentence(text: str) -> str:
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
    words = sentence.split()
    return " ".join(words[:MAX_DESCRIPTION_WORDS]).rstrip(".!?")


def _words(text: str) -> set[str]:
    """Content words, to tell whether a part says anything new."""
    return set(re.findall(r"[a-z]+", text.lower())) - _STOPWORDS


def clean_keyword(keyword: str, authors: tuple[str, ...]) -> str | None:
    word = " ".join(keyword.replace("_", " ").lower().split())
    if not word or _NUMBERED.search(word) or word in STOP_KEYWORDS or len(word) < 2:
        return None
    if any(word == a.lower() or word in slug(a).replace("_", " ") for a in authors):
        return None
    return word


class CaptionRules:
    """Captions for a whole collection: the boilerplate counts need every title and description first."""

    def __init__(self, metas: list[ClipartMeta]) -> None:
        self.title_counts = Counter(m.title.lower() for m in metas if m.title)
        self.description_counts = Counter(m.description.lower() for m in metas if m.description)

    def name(self, meta: ClipartMeta) -> str:
        title = _without_authors(meta.title, meta.authors) if meta.title else ""
        if title and not _is_boilerplate(meta.title or "", self.title_counts) and re.search(r"[A-Za-z]{2}", title):
            return title.replace("_", " ")
        words = filename_words(meta.path.rsplit("/", 1)[-1], meta.authors)
        return words or meta.path.rsplit("/", 2)[-2].replace("_", " ")

    def description(self, meta: ClipartMeta, name: str) -> str | None:
        text = meta.description
        if not text or _ADDRESS.search(text) or _is_boilerplate(text, self.description_counts):
            return None
        sentence = _first_sentence(_without_authors(text, meta.authors))
        if not re.search(r"[A-Za-z]{2}", sentence) or _words(sentence) <= _words(name):
            return None
        return sentence

    def caption(self, meta: ClipartMeta) -> str:
        name = self.name(meta)
        description = self.description(meta, name)
        said = _words(name) | (_words(description) if description else set())
        keywords: list[str] = []
        for raw in meta.keywords:
            word = clean_keyword(raw, meta.authors)
            if word and not _words(word) <= said:
                keywords.append(word)
                said |= _words(word)
            if len(keywords) == MAX_KEYWORDS:
                break
        caption = name + (f": {description}." if description else "")
        if keywords:
            caption += (" " if description else ": ") + ", ".join(keywords)
        return caption


def list_clipart(png_root: Path = CLIPART_PNG_ROOT, svg_root: Path = CLIPART_SVG_ROOT) -> list[tuple[Path, ClipartMeta]]:
    """Every PNG of the package (sorted by path) with its SVG's metadata (empty if the SVG is missing)."""
    out = []
    for png in sorted(png_root.rglob("*.png")):
        rel = png.relative_to(png_root).with_suffix("").as_posix()
        svg = svg_root / f"{rel}.svg"
        out.append((png, read_svg_meta(svg, rel) if svg.is_file() else ClipartMeta(rel, None, None, (), ())))
    return out
