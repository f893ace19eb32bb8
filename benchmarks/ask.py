"""Does `ask` know when nothing in the video answers the question? Labelled questions with and without answers.

    python benchmarks/ask.py                  # the labelled set below, at the configured threshold
    python benchmarks/ask.py --sweep          # also every threshold from 0.20 to 0.80

Videos (generated once, analysed with the lecture profile: espeak-ng narration transcribed by the bundled
Whisper, slides read by OCR, no VLM) are the project's synthetic lectures: the eight two-slide topic lectures of
`videopipe.testing.media.TOPIC_LECTURES` and the three-slide short lecture the tests use. Each question is asked of
one video (as `POST /v1/videos/{id}/ask` does), in four groups:

- answerable: paraphrases of what one slide says or shows (never its exact sentence); counted as answered when
  `ask` does not say "nothing matches", and as right when its first citation overlaps that slide;
- other subject: the answerable questions of the other lectures, asked of a lecture that never mentions them;
- unrelated: everyday questions no lecture is about;
- same subject, not said: on the lecture's subject but not answered by anything it says or shows (the hardest).

The eight topic lectures are also joined into one survey lecture of four subjects (eight slides, 36 s): the
answerable questions of those four are asked of it too (answerable, right when the cited slide is theirs), and the
other four subjects' questions are unanswerable there.

Reported per group: how often `ask` (no model) answers "nothing matches", and the best score `ask` saw.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

CACHE = Path(__file__).parent / ".media" / "ask"

# (topic, slide index, question): paraphrases, not the narration itself.
ANSWERABLE = [
    ("geology", 0, "Where does the magma come from before an eruption?"),
    ("geology", 1, "What covers the mountain once the volcano has erupted?"),
    ("astronomy", 0, "What does a telescope gather from faraway galaxies?"),
    ("astronomy", 1, "What do the planets travel around?"),
    ("cooking", 0, "Which ingredients make bread dough?"),
    ("cooking", 1, "How do you know the loaf is done in the oven?"),
    ("sports", 0, "Who scores a goal?"),
    ("sports", 1, "How many players defend at the back?"),
    ("personal finance", 0, "How does compound interest affect savings?"),
    ("personal finance", 1, "What does a budget keep track of?"),
    ("music", 0, "How do you play a major chord on the piano?"),
    ("music", 1, "Who keeps the rhythm of the song?"),
    ("medicine", 0, "What does the heart pump through the arteries?"),
    ("medicine", 1, "What does the doctor use to measure blood pressure?"),
    ("programming", 0, "What does a function give back?"),
    ("programming", 1, "What does a loop do with the items in a list?"),
    ("short", 0, "What does entropy measure?"),
    ("short", 1, "Can a volcano erupt without warning?"),
    ("short", 2, "What did the telescope reveal?"),
    # few words in common with the slide or the narration
    ("geology", 0, "What rises up from deep underground?"),
    ("astronomy", 1, "What sits at the centre of the solar system?"),
    ("cooking", 1, "What colour should the crust turn?"),
    ("sports", 0, "Who passes the ball?"),
    ("personal finance", 1, "How can I keep an eye on my monthly spending?"),
    ("music", 1, "What does the drummer do?"),
    ("medicine", 1, "What is a cuff used for?"),
    ("programming", 0, "What do functions take as input?"),
]
# One longer lecture that goes through four subjects (eight slides): its answerable questions are those of the four
# subjects, asked of it; the other subjects' questions are unanswerable there.
SURVEY = ("geology", "cooking", "music", "programming")
UNRELATED = [
    "What is the capital of Peru?",
    "How do I change a flat tyre on my car?",
    "What time does the last train to Leeds leave?",
    "How many legs does a spider have?",
    "Who painted the Mona Lisa?",
    "How do I reset my router password?",
]
SAME_SUBJECT = {
    "geology": "How many people died when Vesuvius buried Pompeii?",
    "astronomy": "How far away is the Andromeda galaxy?",
    "cooking": "How much sugar goes into a chocolate cake?",
    "sports": "Who won the 1998 World Cup final?",
    "personal finance": "What is the tax rate on dividends?",
    "music": "Who composed the Moonlight Sonata?",
    "medicine": "What causes type 2 diabetes?",
    "programming": "How do I install Python on Windows?",
    "short": "Who invented the steam engine?",
}
# A longer lecture: three slides of 40 s, six spoken sentences each, so a moment holds a paragraph, not a sentence
# (a moment's cosine to a short question falls as its text grows).
LONG = (
    ("The restless Earth", ("volcanoes", "earthquakes"), (
        "Magma rises from deep below and the volcano erupts.", "Lava and ash cover the mountain afterwards.",
        "Earthquakes happen when plates move and faults break.", "Geologists read layers of rock like a book.",
        "Hot springs and geysers are heated by magma.", "Mount Etna in Sicily is a very active volcano.")),
    ("In the kitchen", ("bread", "sauce"), (
        "Mix flour, water and yeast to make the dough.", "Let the dough rest in a warm place for an hour.",
        "Bake the bread until the crust is brown.", "A pinch of salt makes the bread taste better.",
        "Basil and tomatoes make a simple summer sauce.", "Knead the dough for ten minutes until smooth.")),
    ("Making music", ("instruments", "the orchestra"), (
        "Press the piano keys together to play a chord.", "The drummer keeps the rhythm of the song.",
        "A violin has four strings tuned in fifths.", "Singers warm up their voices before a concert.",
        "The conductor leads the orchestra with a baton.", "Jazz musicians often improvise their solos.")),
)  # fmt: skip
LONG_ANSWERABLE = [
    (0, "What heats the water of geysers?"),
    (0, "Which volcano in Sicily is very active?"),
    (0, "Why do earthquakes happen?"),
    (1, "How long should the dough rest?"),
    (1, "Why add salt to bread?"),
    (1, "What goes into a simple summer sauce?"),
    (2, "How many strings does a violin have?"),
    (2, "What does the conductor hold?"),
    (2, "What do jazz players make up as they play?"),
]
LONG_UNANSWERABLE = [
    ("other subject", "What does a telescope gather from faraway galaxies?"),
    ("other subject", "How does compound interest affect savings?"),
    ("other subject", "What does the doctor use to measure blood pressure?"),
    ("other subject", "What does a function give back?"),
    ("other subject", "Who scores a goal?"),
    ("same subject, not said", "How many people died when Vesuvius buried Pompeii?"),
    ("same subject, not said", "How much sugar goes into a chocolate cake?"),
    ("same subject, not said", "Who composed the Moonlight Sonata?"),
]
GROUPS = ("answerable", "other subject", "unrelated", "same subject, not said")


def build_library(work: Path) -> tuple[Any, dict[str, str], dict[str, list[tuple[float, float]]]]:
    """The analysed videos in a local library under `work` (reused when already there): services, video id by
    topic, slide spans by topic."""
    from videopipe.analysis import AnalyzeOptions, analyze
    from videopipe.config import Settings
    from videopipe.services import open_services
    from videopipe.testing.media import TOPIC_LECTURES, Slide, write_lecture_video, write_topic_lecture

    settings = Settings(data_dir=work / "data", vlm="none")
    services = open_services(settings, dispatch="none", migrate=True)
    marker = work / "library.json"
    ids: dict[str, str] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    if marker.is_file():
        saved = json.loads(marker.read_text())
        spans = {k: [(float(a), float(b)) for a, b in v] for k, v in saved["spans"].items()}
        ids = saved["ids"]
    options = AnalyzeOptions.for_profile("lecture", vlm="none")
    for topic in [*TOPIC_LECTURES, "short", "survey", "long"]:
        if topic in ids:
            continue
        path = work / "videos" / f"{topic.replace(' ', '-')}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        if topic == "short":  # the tests' short lecture (tests/conftest.py)
            slides = [Slide("Entropy and information", ("Shannon 1948", "measured in bits"), 6.0),
                      Slide("How volcanoes erupt", ("magma chambers", "eruption warning signs"), 6.0),
                      Slide("Telescopes and galaxies", ("mirrors and lenses", "distant galaxies"), 6.0)]  # fmt: skip
            narration = [(0.8, "Entropy measures uncertainty in a message."),
                         (6.8, "A volcano can erupt without warning."),
                         (12.8, "The telescope revealed distant galaxies.")]  # fmt: skip
            video = write_lecture_video(path, slides, narration, width=640, height=360)
        elif topic == "survey":
            slides, narration = [], []
            for subject in SURVEY:
                for title, lines, sentence in TOPIC_LECTURES[subject]:
                    narration.append((len(slides) * 4.5 + 0.5, sentence))
                    slides.append(Slide(title, lines, 4.5))
            video = write_lecture_video(path, slides, narration, width=480, height=270)
        elif topic == "long":
            slides, narration = [], []
            for n, (title, lines, sentences) in enumerate(LONG):
                narration += [(n * 40.0 + 0.5 + 6.5 * i, sentence) for i, sentence in enumerate(sentences)]
                slides.append(Slide(title, lines, 40.0))
            video = write_lecture_video(path, slides, narration, width=480, height=270)
        else:
            video = write_topic_lecture(path, topic)
        starts = [*video.slide_starts_s, video.duration_s]
        spans[topic] = list(itertools.pairwise(starts))
        doc = analyze(path, work / "out" / topic.replace(" ", "-"), settings, options)
        ids[topic] = services.jobs.record_analysis(path, doc, work / "out" / topic.replace(" ", "-"), "default")
        print(f"analysed {topic} in {time.perf_counter() - t:.1f} s", flush=True)
        marker.write_text(json.dumps({"ids": ids, "spans": spans}))
    marker.write_text(json.dumps({"ids": ids, "spans": spans}))
    return services, ids, spans


def questions(topics: list[str]) -> list[tuple[str, str, str, int | None]]:
    """(group, topic asked of, question, slide index of the answer or None)."""
    out: list[tuple[str, str, str, int | None]] = [("answerable", t, q, i) for t, i, q in ANSWERABLE]
    out += [("answerable", "survey", q, SURVEY.index(t) * 2 + i) for t, i, q in ANSWERABLE if t in SURVEY]
    out += [("other subject", "survey", q, None) for t, i, q in ANSWERABLE if t not in (*SURVEY, "short")][::2]
    out += [("unrelated", "survey", q, None) for q in UNRELATED]
    out += [("answerable", "long", q, i) for i, q in LONG_ANSWERABLE]
    out += [(g, "long", q, None) for g, q in LONG_UNANSWERABLE]
    out += [("unrelated", "long", q, None) for q in UNRELATED]
    for n, topic in enumerate(t for t in topics if t not in ("survey", "long")):
        others = [(t, q) for t, _, q in ANSWERABLE if t != topic and not (topic == "short" and t in
                  ("geology", "astronomy")) and not (t == "short" and topic in ("geology", "astronomy"))]  # fmt: skip
        for _, q in others[n % 3 :: 5]:  # a spread of the other lectures' questions
            out.append(("other subject", topic, q, None))
        out += [("unrelated", topic, q, None) for q in UNRELATED]
        out.append(("same subject, not said", topic, SAME_SUBJECT[topic], None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", action="store_true", help="also report every threshold from 0.20 to 0.80")
    parser.add_argument("--verbose", action="store_true", help="print every question's best score")
    args = parser.parse_args()

    from videopipe.ask import Asker
    from videopipe.search import Searcher

    CACHE.mkdir(parents=True, exist_ok=True)
    services, ids, spans = build_library(CACHE)
    settings = services.settings
    searcher = Searcher(settings, services.sessions)
    asker = Asker(settings, services.sessions, services.store, searcher)
    rows = []
    t = time.perf_counter()
    for group, topic, question, slide in questions(list(ids)):
        answer = asker.ask("default", ids[topic], question, vlm="none")
        hits = searcher.search(question, "default", video_id=ids[topic], limit=20)
        best = hits[0]["score"] if hits else 0.0
        nothing = answer["mode"] == "no-match"
        right = by_score = by_rrf = None
        if slide is not None:
            a, b = spans[topic][slide]

            def inside(h: dict[str, Any], a: float = a, b: float = b) -> bool:
                return bool(h["start_s"] < b - 0.5 and h["end_s"] > a + 0.5)

            right = None if nothing else inside(answer["citations"][0])
            # The first moment by absolute score (what search returns now) and by fusion alone (the order before).
            k = settings.search.rrf_k
            fused = sorted(hits, key=lambda h: -sum(1 / (k + r) for r in h["ranks"].values() if r is not None))
            by_score, by_rrf = inside(hits[0]), inside(fused[0])
        rows.append({"group": group, "topic": topic, "question": question, "best": best, "nothing": nothing,
                     "right": right, "by_score": by_score, "by_rrf": by_rrf,
                     "parts": hits[0]["relevance"] if hits else None})  # fmt: skip
        if args.verbose:
            print(f"{group:24} {topic:17} {best:.3f} {'NOTHING' if nothing else 'answer '} {right} {question} "
                  f"{hits[0]['relevance'] if hits else ''}")  # fmt: skip
    elapsed = time.perf_counter() - t

    threshold = settings.search.ask_min_score
    print(
        f"\n{len(rows)} questions over {len(ids)} lectures; ask_min_score {threshold}; {platform.machine()}, "
        f"Python {sys.version.split()[0]}; {elapsed / len(rows) * 1000:.0f} ms per question (ask + search)\n"
    )
    print(
        "| group | questions | ask answers | ask says nothing matches | right slide cited | best score median "
        "(min-max) |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for group in GROUPS:
        g = [r for r in rows if r["group"] == group]
        if not g:
            continue
        scores = sorted(r["best"] for r in g)
        answered = [r for r in g if not r["nothing"]]
        cited = f"{sum(bool(r['right']) for r in answered)}/{len(answered)}" if group == "answerable" else ""
        print(
            f"| {group} | {len(g)} | {len(answered) / len(g):.0%} | {1 - len(answered) / len(g):.0%} | {cited} | "
            f"{scores[len(scores) // 2]:.2f} ({scores[0]:.2f}-{scores[-1]:.2f}) |"
        )
    unans = [r for r in rows if r["group"] != "answerable"]
    ans = [r for r in rows if r["group"] == "answerable"]
    print(
        f"\nbefore (scores divided by the top hit, extractive answer when >= 0.75): ask answers every question "
        f"with a hit: {sum(r['parts'] is not None for r in unans)}/{len(unans)} unanswerable answered"
    )
    print(
        f"right slide first (answerable, search inside the video): by absolute score "
        f"{sum(bool(r['by_score']) for r in ans)}/{len(ans)}, by reciprocal rank fusion alone "
        f"{sum(bool(r['by_rrf']) for r in ans)}/{len(ans)}"
    )
    print(
        f"\nall unanswerable: nothing matches for {sum(r['nothing'] for r in unans)}/{len(unans)} "
        f"({sum(r['nothing'] for r in unans) / len(unans):.0%}); answerable answered "
        f"{sum(not r['nothing'] for r in ans)}/{len(ans)} ({sum(not r['nothing'] for r in ans) / len(ans):.0%})"
    )
    for name, is_long in (
        ("short lectures (one sentence per slide)", False),
        ("the long lecture (six sentences per slide)", True),
    ):
        some = [r for r in ans if (r["topic"] == "long") == is_long]
        none = [r for r in unans if (r["topic"] == "long") == is_long]
        print(
            f"{name}: answerable answered {sum(not r['nothing'] for r in some)}/{len(some)}, right slide "
            f"{sum(bool(r['right']) for r in some)}; unanswerable refused {sum(r['nothing'] for r in none)}/{len(none)}"
        )
    for r in rows:  # the misses, to read
        if r["nothing"] == (r["group"] == "answerable") or r["right"] is False:
            print(f"  miss: [{r['group']}] {r['topic']}: {r['question']} (best {r['best']:.3f}, {r['parts']})")
    # What scoring costs search: every question over the whole library (limit 10), interleaved rounds, with the
    # 20 fused candidates scored (now) and with only the 10 returned scored (the least the absolute score needs).
    import videopipe.search as search_module

    timings: dict[int, list[float]] = {search_module.RESCORED: [], 10: []}
    texts = [q for _, _, q, _ in questions(list(ids))]
    for n in range(5):
        for rescored in list(timings)[:: 1 if n % 2 else -1]:  # alternate which goes first
            search_module.RESCORED = rescored
            t = time.perf_counter()
            for q in texts:
                searcher.search(q, "default", limit=10)
            timings[rescored].append((time.perf_counter() - t) / len(texts) * 1000)
    print("\nsearch latency over the whole library (ms per query, median of 5 rounds): " + ", ".join(
        f"{k} candidates scored {sorted(v)[2]:.1f}" for k, v in timings.items()))  # fmt: skip
    if args.sweep:
        print("\n| threshold | unanswerable: nothing matches | answerable: answered |\n|---:|---:|---:|")
        for k in range(20, 81, 5):
            x = k / 100
            print(
                f"| {x:.2f} | {sum(r['best'] < x for r in unans) / len(unans):.0%} | "
                f"{sum(r['best'] >= x for r in ans) / len(ans):.0%} |"
            )


if __name__ == "__main__":
    main()
