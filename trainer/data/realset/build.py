"""`sharenas data build DIR`: the real image-text set (ShareBench-real) from Debian's packages.

Sources (`SOURCES`; a build takes `DEFAULT_SOURCES` unless told otherwise): the Open Clip Art
Library (`clipart`: `openclipart-png` images captioned from `openclipart-svg` metadata, see
`clipart.py`), Noto Color Emoji glyphs with their Unicode names and CLDR keywords (`emoji`, see
`emoji.py`), and, not in the default build, Tux Paint's stamps with their descriptions (`tuxpaint`,
see `tuxpaint.py`) and Wesnoth's unit sprites and portraits with the units' names and descriptions
(`wesnoth`, see `wesnoth.py`). Steps, each a fixed rule:
1. every source image is flattened on white, cropped to its content, padded square and stored at
   `Rules.image_size` px (64: serves the `tiny` 32 px and `small` 64 px sizes); blank images are dropped;
2. duplicates go: images with identical stored pixels keep the first by id, and no caption is kept
   for more than `Rules.max_per_caption` images (1,375 generated stars would otherwise share "star");
   pairs of the default sources come first in both, so adding a source never removes one of theirs;
3. the split is by image and fixed: within each clip-art category and emoji group, the
   `Rules.heldout_fraction` of images whose ids have the lowest SHA-256 are held out;
4. outputs: `images/ID.png`, `train.csv` / `heldout.csv` (filepath, caption, source, category,
   subgroup, id), webdataset shards `shards/{train,heldout}-NNNNNN.tar` (KEY.png, KEY.txt,
   KEY.json), `LICENSES/`, and `manifest.json` with the package versions, the rules, the counts, the
   zero-shot tasks and the SHA-256 of every CSV and shard. Tar members carry no time or owner, so
   the same package versions give byte-identical files. A build from other sources than the
   default records them as `sources` (a manifest without it was built from the default ones), and
   the default build writes exactly what it wrote before the other sources existed.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sys
import tarfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, TypeVar

from PIL import Image

from trainer import atomic
from trainer.data.realset import clipart, emoji, tuxpaint, wesnoth
from trainer.data.realset.images import BlankImage, load_source, prepare
from trainer.data.realset.packages import DEFAULT_SOURCES, SOURCES, debian_versions, source_packages, write_licenses
from trainer.data.realset.manifest import MANIFEST, MANIFEST_SCHEMA, ZeroShotSpec

NON_VISUAL = frozenset({"unsorted", "special"})
"""Clip-art folders that are not a kind of picture: "unsorted", and "special" (gradients, patterns, ...)."""
CLIPART_TEMPLATES = ("clip art of {}.", "a drawing of {}.", "an illustration of {}.", "a clip art image from the {} category.")
EMOJI_TEMPLATES = ("an emoji of {}.", "a {} emoji.", "an emoji from the {} group.")
TUXPAINT_TEMPLATES = ("a drawing of {}.", "a picture of {}.", "a children's drawing from the {} category.")
FIELDS = ("filepath", "caption", "source", "category", "subgroup", "id")
Glyphs = Callable[[str], "Image.Image | None"]
T = TypeVar("T")


@dataclass(frozen=True)
class Pair:
    id: str  # "clipart/animals/birds/...", "emoji/1f600", "tuxpaint/animals/birds/..." or "wesnoth/units/elves-wood/fighter"
    caption: str
    source: str  # one of SOURCES
    category: str  # clip-art or stamp top-level folder, emoji group, or Wesnoth race folder
    subgroup: str  # clip-art or stamp second-level folder (or ""), emoji subgroup, or "sprite" / "portrait"

    @property
    def filepath(self) -> str:
        return f"images/{self.id}.png"


@dataclass(frozen=True)
class Rules:
    """The build's choices, recorded in the manifest. `min_heldout_per_class`: a zero-shot class
    needs this many held-out images (rarer categories stay in training only)."""

    image_size: int = 64
    heldout_fraction: float = 0.15
    max_per_caption: int = 20
    shard_size: int = 1000
    min_heldout_per_class: int = 10


@dataclass(frozen=True)
class Roots:
    """Where the packages put their files (tests point these at fixtures)."""

    clipart_png: Path = clipart.CLIPART_PNG_ROOT
    clipart_svg: Path = clipart.CLIPART_SVG_ROOT
    emoji_font: Path = emoji.EMOJI_FONT
    emoji_test: Path = emoji.EMOJI_TEST
    cldr: tuple[Path, ...] = emoji.CLDR_ANNOTATIONS
    tuxpaint: Path = tuxpaint.STAMPS_ROOT
    wesnoth: Path = wesnoth.WESNOTH_ROOT


def _id_hash(pair: Pair) -> str:
    return hashlib.sha256(pair.id.encode()).hexdigest()


def heldout_ids(pairs: list[Pair], fraction: float) -> set[str]:
    """Within each (source, category), the `fraction` of images whose ids hash lowest: a split by
    image, stratified so every category and emoji group is held out in proportion."""
    groups: dict[tuple[str, str], list[Pair]] = defaultdict(list)
    for pair in pairs:
        groups[(pair.source, pair.category)].append(pair)
    return {p.id for group in groups.values() for p in sorted(group, key=_id_hash)[: round(fraction * len(group))]}


def _clipart_image(path: Path, size: int) -> tuple[bytes | None, bool, str | None]:
    """(stored PNG or None, was a decompression bomb, why it was dropped)."""
    try:
        data, bomb = load_source(path, size)
        return data, bomb, None
    except BlankImage as blank:
        return None, False, f"blank: {blank}"
    except Exception as error:  # noqa: BLE001 - any undecodable file is counted, never fatal
        return None, False, f"undecodable: {type(error).__name__}: {error}"


def _clipart_pairs(roots: Roots, size: int, workers: int, counts: Counter, notes: dict[str, list[str]]) -> list[tuple[Pair, bytes]]:
    """Workers > 1 decode in a process pool (Pillow's pixel limit is process-global, see `open_image`)."""
    items = clipart.list_clipart(roots.clipart_png, roots.clipart_svg)
    if not items:
        raise FileNotFoundError(f"no PNG files under {roots.clipart_png}: install Debian's openclipart-png (scripts/realdata.sh install)")
    rules = clipart.CaptionRules([meta for _, meta in items])
    paths = [png for png, _ in items]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            images = list(pool.map(_clipart_image, paths, [size] * len(paths), chunksize=16))
    else:
        images = [_clipart_image(path, size) for path in paths]
    out = []
    counts["clipart_found"] = len(items)
    for (png, meta), (data, bomb, dropped) in zip(items, images):
        if bomb:
            notes["decompression_bombs_resized"].append(meta.path)
        if data is None:
            counts[f"clipart_dropped_{dropped.split(':')[0]}"] += 1
            notes["clipart_dropped"].append(f"{meta.path} ({dropped})")
            continue
        parts = meta.path.split("/")
        subgroup = parts[1] if len(parts) > 2 else ""
        out.append((Pair(f"clipart/{meta.path}", rules.caption(meta), "clipart", meta.category, subgroup), data))
    return out


def _emoji_pairs(roots: Roots, glyphs: Glyphs | None, size: int, counts: Counter, notes: dict[str, list[str]]) -> list[tuple[Pair, bytes]]:
    renderer = glyphs or emoji.GlyphRenderer(roots.emoji_font)
    keywords = emoji.read_keywords(roots.cldr)
    out = []
    entries = emoji.read_emoji_test(roots.emoji_test)
    counts["emoji_found"] = len(entries)
    for entry in entries:
        glyph = renderer(entry.text)
        if glyph is None:
            counts["emoji_dropped_unrenderable"] += 1
            notes["emoji_dropped"].append(entry.name)
            continue
        out.append((Pair(f"emoji/{entry.key}", emoji.caption(entry, keywords), "emoji", entry.group, entry.subgroup), prepare(glyph, size)))
    return out


def _stored(load: Callable[[T], Image.Image], item: T, size: int) -> tuple[bytes | None, str | None]:
    """(stored PNG of the picture `load(item)` draws, or None; why it was dropped)."""
    try:
        return prepare(load(item), size), None
    except BlankImage as blank:
        return None, f"blank: {blank}"
    except Exception as error:  # noqa: BLE001 - any undecodable file is counted, never fatal
        return None, f"undecodable: {type(error).__name__}: {error}"


def _stored_all(load: Callable[[T], Image.Image], items: list[T], size: int, workers: int) -> list[tuple[bytes | None, str | None]]:
    """`_stored` for every item, in a process pool when workers > 1 (`load` must be a module-level function)."""
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_stored, [load] * len(items), items, [size] * len(items), chunksize=8))
    return [_stored(load, item, size) for item in items]


def _keep(source: str, found: list[tuple[str, Pair]], images: list[tuple[bytes | None, str | None]], counts: Counter,
          notes: dict[str, list[str]]) -> list[tuple[Pair, bytes]]:
    """The pairs whose pictures were stored; the others counted and noted as `SOURCE_dropped_WHY`."""
    out = []
    for (path, pair), (data, dropped) in zip(found, images):
        if data is None:
            counts[f"{source}_dropped_{dropped.split(':')[0]}"] += 1
            notes[f"{source}_dropped"].append(f"{path} ({dropped})")
        else:
            out.append((pair, data))
    return out


def _tuxpaint_pairs(roots: Roots, size: int, workers: int, counts: Counter, notes: dict[str, list[str]]) -> list[tuple[Pair, bytes]]:
    stamps = tuxpaint.list_stamps(roots.tuxpaint)
    if not stamps:
        raise FileNotFoundError(f"no described stamps under {roots.tuxpaint}: install Debian's tuxpaint-stamps-default "
                                "(scripts/realdata.sh install --sources tuxpaint)")
    if any(s.image.suffix == ".svg" for s in stamps):
        tuxpaint.check_svg_renderer()
    counts["tuxpaint_found"] = len(stamps)
    counts["tuxpaint_rendered_svg"] = sum(s.image.suffix == ".svg" for s in stamps)
    found = [(s.path, Pair(f"tuxpaint/{s.path}", s.description, "tuxpaint", s.category, s.subgroup)) for s in stamps]
    return _keep("tuxpaint", found, _stored_all(tuxpaint.load_stamp, stamps, size, workers), counts, notes)


def _wesnoth_pairs(roots: Roots, size: int, workers: int, counts: Counter, notes: dict[str, list[str]]) -> list[tuple[Pair, bytes]]:
    pictures, shared = wesnoth.list_pictures(roots.wesnoth)
    if not pictures:
        raise FileNotFoundError(f"no unit pictures under {roots.wesnoth}: install Debian's wesnoth-1.16-data (scripts/realdata.sh install --sources wesnoth)")
    counts["wesnoth_found"] = len(pictures)
    counts["wesnoth_dropped_shared_picture"] = len(shared)
    notes["wesnoth_shared_pictures"] = shared
    found = [(p.rel, Pair(f"wesnoth/{p.rel}", wesnoth.caption(p.name, p.description), "wesnoth", p.race, p.kind)) for p in pictures]
    return _keep("wesnoth", found, _stored_all(wesnoth.load_picture, [p.image for p in pictures], size, workers), counts, notes)


def _added(pair: Pair) -> bool:
    """Whether the pair is of a source beyond the default ones (these give way in deduplication)."""
    return pair.source not in DEFAULT_SOURCES


def deduplicate(pairs: list[tuple[Pair, bytes]], max_per_caption: int, counts: Counter) -> list[tuple[Pair, bytes]]:
    """Drop images whose stored pixels repeat an earlier one (by id), then cap each caption at
    `max_per_caption` images, keeping those whose id hashes lowest (an unbiased, stable choice).
    Pairs of the default sources come before the others in both steps, so the default sources keep
    the same pairs whatever else is built beside them."""
    seen: set[str] = set()
    unique = []
    for pair, data in sorted(pairs, key=lambda p: (_added(p[0]), p[0].id)):
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            counts[f"{pair.source}_dropped_duplicate_image"] += 1
            continue
        seen.add(digest)
        unique.append((pair, data))
    by_caption: dict[str, list[tuple[Pair, bytes]]] = defaultdict(list)
    for item in unique:
        by_caption[item[0].caption.lower()].append(item)
    kept = []
    for group in by_caption.values():
        group.sort(key=lambda p: (_added(p[0]), _id_hash(p[0])))
        kept += group[:max_per_caption]
        for pair, _ in group[max_per_caption:]:
            counts[f"{pair.source}_dropped_caption_cap"] += 1
    return sorted(kept, key=lambda p: p[0].id)


def zeroshot_specs(heldout: list[Pair], min_per_class: int, sources: tuple[str, ...] = DEFAULT_SOURCES) -> list[ZeroShotSpec]:
    """Per built source, in `SOURCES` order: clip-art categories (visual ones with enough held-out
    images), emoji groups, and stamp categories (visual ones with enough held-out images; a task
    with fewer than two classes is left out). Wesnoth gets none: of its races only humans and the
    mixed "monsters" folder have enough held-out pictures."""
    per = Counter((p.source, p.category) for p in heldout)
    clip_classes = sorted(c for (s, c), n in per.items() if s == "clipart" and c not in NON_VISUAL and n >= min_per_class)
    emoji_classes = [g for g in dict.fromkeys(p.category for p in sorted(heldout, key=lambda p: p.id) if p.source == "emoji")
                     if per[("emoji", g)] >= min_per_class]
    stamp_classes = sorted(c for (s, c), n in per.items() if s == "tuxpaint" and c not in tuxpaint.NON_VISUAL and n >= min_per_class)
    specs = {
        "clipart": ZeroShotSpec("clipart", "clipart", tuple(clip_classes), tuple(c.replace("_", " ") for c in clip_classes), CLIPART_TEMPLATES),
        "emoji": ZeroShotSpec("emoji", "emoji", tuple(sorted(emoji_classes)), tuple(g.replace("&", "and").lower() for g in sorted(emoji_classes)),
                              EMOJI_TEMPLATES),
    }
    if len(stamp_classes) >= 2:
        specs["tuxpaint"] = ZeroShotSpec("tuxpaint", "tuxpaint", tuple(stamp_classes), tuple(c.replace("naturalforces", "natural forces") for c in stamp_classes),
                                         TUXPAINT_TEMPLATES)
    return [specs[s] for s in SOURCES if s in sources and s in specs]


def _tar_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    archive.addfile(info, io.BytesIO(data))


def write_shards(out: Path, split: str, pairs: list[tuple[Pair, bytes]], shard_size: int) -> list[str]:
    names = []
    for start in range(0, len(pairs), shard_size):
        name = f"shards/{split}-{start // shard_size:06d}.tar"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for index, (pair, data) in enumerate(pairs[start:start + shard_size], start):
                key = f"{split}-{index:06d}"
                record = {k: v for k, v in asdict(pair).items()}
                _tar_member(archive, f"{key}.png", data)
                _tar_member(archive, f"{key}.txt", pair.caption.encode())
                _tar_member(archive, f"{key}.json", json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        atomic.write_bytes(out / name, buffer.getvalue())
        names.append(name)
    return names


def write_csv(path: Path, pairs: list[Pair]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for pair in pairs:
        writer.writerow({"filepath": pair.filepath, **{k: v for k, v in asdict(pair).items()}})
    atomic.write_text(path, buffer.getvalue())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_sources(text: str) -> tuple[str, ...]:
    """`"clipart,emoji,tuxpaint"` -> the sources in `SOURCES` order; ValueError naming the unknown ones."""
    given = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(given) - set(SOURCES))
    if unknown or not given:
        raise ValueError(f"unknown sources {unknown or given}: choose from {', '.join(SOURCES)} (comma-separated)")
    return tuple(s for s in SOURCES if s in given)


def build_realset(out: str | Path, roots: Roots = Roots(), rules: Rules = Rules(), workers: int = 2, glyphs: Glyphs | None = None,
                  sources: tuple[str, ...] = DEFAULT_SOURCES) -> dict:
    """Build the set from `sources` (a subset of `SOURCES`) into `out` (replacing an earlier build
    there) and return its manifest. `glyphs` draws one emoji (default: Noto Color Emoji at
    `roots.emoji_font`)."""
    out = Path(out)
    sources = parse_sources(",".join(sources))
    counts: Counter = Counter()
    notes: dict[str, list[str]] = defaultdict(list)
    size = rules.image_size
    found = []
    if "clipart" in sources:
        found += _clipart_pairs(roots, size, workers, counts, notes)
    if "emoji" in sources:
        found += _emoji_pairs(roots, glyphs, size, counts, notes)
    if "tuxpaint" in sources:
        found += _tuxpaint_pairs(roots, size, workers, counts, notes)
    if "wesnoth" in sources:
        found += _wesnoth_pairs(roots, size, workers, counts, notes)
    pairs = deduplicate(found, rules.max_per_caption, counts)
    held = heldout_ids([p for p, _ in pairs], rules.heldout_fraction)
    splits = {"train": [p for p in pairs if p[0].id not in held], "heldout": [p for p in pairs if p[0].id in held]}
    for name in ("images", "shards", "LICENSES"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "shards").mkdir(parents=True)
    for pair, data in pairs:
        path = out / pair.filepath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    files = []
    for split, items in splits.items():
        write_csv(out / f"{split}.csv", [p for p, _ in items])
        files += [f"{split}.csv", *write_shards(out, split, items, rules.shard_size)]
        counts[split] = len(items)
        for source in sources:
            counts[f"{split}_{source}"] = sum(p.source == source for p, _ in items)
    write_licenses(out, sources)
    rule_record = {**asdict(rules), "non_visual_categories": sorted(NON_VISUAL), "clipart_collection_size": clipart.COLLECTION_SIZE}
    if "tuxpaint" in sources:
        rule_record.update(tuxpaint_non_visual_categories=sorted(tuxpaint.NON_VISUAL), tuxpaint_max_words=tuxpaint.MAX_WORDS,
                           tuxpaint_svg_side=tuxpaint.SVG_SIDE)
    if "wesnoth" in sources:
        rule_record.update(wesnoth_max_words=wesnoth.MAX_WORDS, wesnoth_skipped_folders=sorted(wesnoth.SKIPPED_FOLDERS),
                           wesnoth_team_palette=[f"{c:06X}" for c in wesnoth.TEAM_PALETTE], wesnoth_team_colour_range=[f"{c:06X}" for c in wesnoth.RED_RANGE])
    manifest = {
        "schema": MANIFEST_SCHEMA,
        **({} if sources == DEFAULT_SOURCES else {"sources": list(sources)}),
        "image_size": size,
        "packages": debian_versions(source_packages(sources)),
        "software": {"pillow": Image.__version__, "zlib": Image.core.zlib_version, "python": sys.version.split()[0],
                     "sharenas": metadata.version("sharenas")},
        "rules": rule_record,
        "counts": dict(sorted(counts.items())),
        "notes": {k: sorted(v) for k, v in sorted(notes.items())},
        "zeroshot": [spec.to_dict() for spec in zeroshot_specs([p for p, _ in splits["heldout"]], rules.min_heldout_per_class, sources)],
        "files": {name: sha256_file(out / name) for name in files},
    }
    atomic.write_json(out / MANIFEST, manifest, ensure_ascii=False)
    return manifest
