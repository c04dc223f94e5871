"""The labelled curation benchmark's sources and items: what each item is, and the truth known by construction.

Sources are the real talking clips in ../shared/media/video_av, split in two halves by *identity* (the three AOC
recordings stay together), so nothing is scored on a speaker it was tuned on. Speech-only audio and photos are
split the same way. Items (built by `curation_build.build_items`) per half:
  base      each source's first seconds, audio made in sync (SOURCE_OFFSETS undone)          keep
  shift     base with the audio delayed by k in {+-3, +-5, +-8} frames                     keep |k| <= 6 (re-aligned)
  dub       base video with another speaker's audio                                       drop
  otherlang base video with speech of another language                                    drop (lang_mismatch)
  silence   base video over near-silent audio                                             drop (no_speech)
  blur      base, Gaussian sigma 3 / crf45: re-encoded at CRF 45                          drop (blurry)
  still     a face photo held still, with speech                                          drop
  sbs       two speakers side by side                                                     drop (multi_face)
  small     a base shrunk onto a canvas (face ~150-170 px)                                drop (small_face)
  noface    the lower half of a portrait clip (hands, body, own speech)                   drop (no_face)
  cuts      A,B,A,B hard cuts every 4 s; xfade: 3 speakers with 1-s crossfades (640x640)   every segment kept
"""

from __future__ import annotations

from dataclasses import dataclass, field

FPS = 25
SR = 16000
HOP = SR // FPS
SHIFTS: tuple[int, ...] = (-8, -5, -3, 3, 5, 8)


@dataclass(frozen=True)
class Source:
    name: str  # file in video_av/
    key: str
    lang: str
    identity: str
    half: str  # "A" | "B"
    offset: int = 0  # the recording's own A/V offset (frames, + = audio late), undone in the base
    square: bool = True  # usable in side-by-side and cut compositions (face big in a square frame)
    soft: bool = False  # the recording itself is too soft to keep (judged by eye; see RESULTS.md)


# Offsets read by hand (benchmarks/RESULTS_sync.md section D; benchmarks/kit/sync_media.py SOURCE_OFFSETS).
SOURCES: tuple[Source, ...] = (
    Source("hdtf_WDA_AOC_en_8s.mp4", "aoc", "en", "aoc", "A", 2),
    Source("vexpress_AOC_en_4s.mp4", "vexaoc", "en", "aoc", "A", 2),
    Source("retalking_face3_en.mp4", "face3", "en", "aoc", "A"),
    Source("retalking_face1_en.mp4", "face1", "en", "face1", "A"),
    Source("retalking_face4_en.mp4", "face4", "en", "face4", "A"),
    Source("latentsync_demo2_pt_20s.mp4", "demo2", "pt", "demo2", "A", square=False),
    Source("hdtf_WDA_KatieHill_en_8s.mp4", "katie", "en", "katie", "B"),
    Source("retalking_face2_en.mp4", "face2", "en", "face2", "B"),
    Source("retalking_face5_en.mp4", "face5", "en", "face5", "B"),
    Source("latentsync_demo1_ru_10s.mp4", "demo1", "ru", "demo1", "B", square=False),
    Source("latentsync_demo3_en_20s.mp4", "demo3", "en", "demo3", "B", square=False),
    # 480x480 driving video, a ~195 px face, visibly soft (its effective resolution equals the blurred copies')
    Source("liveportrait_d20_zh.mp4", "d20", "zh", "d20", "B", 5, soft=True),
)
BY_KEY = {s.key: s for s in SOURCES}
# speech of another language (audio/<lang>/...), per half
OTHER_LANG: dict[str, tuple[tuple[str, str], ...]] = {
    "A": (("fr", "fr/librivox_reader1259_10s.wav"), ("es", "es/commonvoice_es_10s.wav"), ("zh", "zh/musetalk_sun_22s.wav")),
    "B": (("ru", "ru/librivox_reader4091_10s.wav"), ("pt", "pt/librivox_reader7407_10s.wav"), ("zh", "zh/sadtalker_chinese_news_8s.wav")),
}
# a face photo held still + English speech, per half
STILLS: dict[str, tuple[tuple[str, str], ...]] = {
    "A": (("facenet_angelina_jolie.jpg", "en/jfk_11s.flac"), ("facenet_paul_rudd.jpg", "en/obama_5s.wav")),
    "B": (("facenet_kate_siegel.jpg", "en/hdtf_RD_Radio31_8s.wav"), ("facenet_shea_whigham.jpg", "en/pocketsphinx_librivox_0870.wav")),
}
SBS: dict[str, tuple[tuple[str, str], ...]] = {"A": (("aoc", "face1"), ("face4", "face3")), "B": (("katie", "face2"), ("face5", "d20"))}
SMALL: dict[str, str] = {"A": "aoc", "B": "katie"}
NOFACE: dict[str, str] = {"A": "demo2", "B": "demo3"}
CUTS: dict[str, tuple[str, str]] = {"A": ("aoc", "face1"), "B": ("katie", "face2")}
XFADE: dict[str, tuple[str, str, str]] = {"A": ("face4", "face3", "face1"), "B": ("face5", "katie", "face2")}
XFADE_PART_S, XFADE_S = 4.8, 1.0  # each part, and each crossfade (the cut is at the fade's middle)
BASE_S = 8.0  # seconds of each source in its base item (shorter sources: all of it)
VARIANT_S = 4.0  # blurred / re-encoded copies


@dataclass
class Segment:
    """One stretch of an item with what a careful person would decide about it."""

    start: float
    end: float
    faces: str  # one | multi | none | small
    identity: str = ""
    k: int | None = 0  # audio lag in frames vs the visible face (None: the audio is not this face's)
    lang: str = ""  # spoken language ("" = no speech)
    good: bool = True  # keep it
    reason: str = ""  # the right drop reason when not good


@dataclass
class Item:
    key: str
    half: str
    kind: str
    lang_expected: str
    duration: float
    segments: list[Segment]
    cuts: tuple[float, ...] = ()
    video_of: str = ""  # key of the item whose video stream this item copies bit for bit (audio variants)
    path: str = ""  # the built media file (set by the builder)
    meta: dict = field(default_factory=dict)


def half_sources(half: str) -> list[Source]:
    return [s for s in SOURCES if s.half == half]


def dub_partners(src: Source, n: int = 2) -> list[Source]:
    """Other speakers of the same half whose audio dubs `src` (same language first)."""
    others = [s for s in half_sources(src.half) if s.identity != src.identity]
    return sorted(others, key=lambda s: (s.lang != src.lang, s.key))[:n]


def good_segment(start: float, end: float, src: Source, k: int = 0) -> Segment:
    ok = abs(k) <= 6 and not src.soft
    reason = "" if ok else ("blurry" if src.soft else "out_of_sync")
    return Segment(start, end, "one", src.identity, k, src.lang, ok, reason)


def plan(half: str, durations: dict[str, float]) -> list[Item]:
    """Every item of one half, with truth; `durations` = seconds of each source's base item."""
    items: list[Item] = []
    for i, s in enumerate(half_sources(half)):
        d = durations[s.key]
        base = f"{s.key}-base"
        items.append(Item(base, half, "base", s.lang, d, [good_segment(0, d, s)], meta={"source": s.key}))
        for k in SHIFTS:
            items.append(Item(f"{s.key}-shift{k:+d}".replace("+", "p").replace("-shift-", "-shiftm"), half, "shift",
                              s.lang, d, [good_segment(0, d, s, k)], video_of=base, meta={"source": s.key, "k": k}))
        for o in dub_partners(s):
            seg = Segment(0, d, "one", s.identity, None, o.lang, False, "out_of_sync" if o.lang == s.lang else "lang_mismatch")
            items.append(Item(f"{s.key}-dub-{o.key}", half, "dub", s.lang, d, [seg], video_of=base,
                              meta={"source": s.key, "audio_of": o.key}))
        choices = [x for x in OTHER_LANG[half] if x[0] != s.lang]
        lang, rel = choices[i % len(choices)]
        seg = Segment(0, d, "one", s.identity, None, lang, False, "lang_mismatch")
        items.append(Item(f"{s.key}-lang-{lang}", half, "otherlang", s.lang, d, [seg], video_of=base,
                          meta={"source": s.key, "audio": rel}))
        seg = Segment(0, d, "one", s.identity, None, "", False, "no_speech")
        items.append(Item(f"{s.key}-silence", half, "silence", s.lang, d, [seg], video_of=base, meta={"source": s.key}))
        v = min(VARIANT_S, d)
        for kind in ("blur", "crf45"):
            seg = Segment(0, v, "one", s.identity, 0, s.lang, False, "blurry")
            items.append(Item(f"{s.key}-{kind}", half, kind, s.lang, v, [seg], meta={"source": s.key}))
    for photo, rel in STILLS[half]:
        seg = Segment(0, 6.0, "one", photo, None, "en", False, "out_of_sync")
        items.append(Item(f"still-{photo.split('_', 1)[1].split('.')[0].replace('_', '')}", half, "still", "en", 6.0,
                          [seg], meta={"photo": photo, "audio": rel}))
    for a, b in SBS[half]:
        seg = Segment(0, 6.0, "multi", "", 0, BY_KEY[a].lang, False, "multi_face")
        items.append(Item(f"sbs-{a}-{b}", half, "sbs", BY_KEY[a].lang, 6.0, [seg], meta={"left": a, "right": b}))
    s = BY_KEY[SMALL[half]]
    items.append(Item(f"small-{s.key}", half, "small", s.lang, 6.0,
                      [Segment(0, 6.0, "small", s.identity, 0, s.lang, False, "small_face")], meta={"source": s.key}))
    s = BY_KEY[NOFACE[half]]
    items.append(Item(f"noface-{s.key}", half, "noface", s.lang, 6.0,
                      [Segment(0, 6.0, "none", "", None, s.lang, False, "no_face")], meta={"source": s.key}))
    a, b = (BY_KEY[x] for x in CUTS[half])
    parts = [(a, 0.0), (b, 0.0), (a, 4.0), (b, 1.0)]  # (source, start in its base)
    segs = [good_segment(4.0 * i, 4.0 * (i + 1), src) for i, (src, _) in enumerate(parts)]
    items.append(Item(f"cuts-{a.key}-{b.key}", half, "cuts", "en", 16.0, segs, cuts=(4.0, 8.0, 12.0),
                      meta={"parts": [(p.key, t) for p, t in parts]}))
    srcs = [BY_KEY[x] for x in XFADE[half]]
    step = XFADE_PART_S - XFADE_S
    total = 3 * XFADE_PART_S - 2 * XFADE_S
    cuts = (step + XFADE_S / 2, 2 * step + XFADE_S / 2)
    bounds = [0.0, *cuts, total]
    segs = [good_segment(bounds[i], bounds[i + 1], src) for i, src in enumerate(srcs)]
    langs = {x.lang for x in srcs}
    items.append(Item(f"xfade-{'-'.join(x.key for x in srcs)}", half, "xfade", langs.pop() if len(langs) == 1 else "en",
                      total, segs, cuts=cuts, meta={"parts": [x.key for x in srcs]}))
    for it in items:  # a segment whose language is not the manifest's is a lang_mismatch, whatever else it is
        for sg in it.segments:
            if sg.good and sg.lang != it.lang_expected:
                sg.good, sg.reason = False, "lang_mismatch"
    return items
