"""Full-resolution keyframe grabs in one forward sweep: the very frames a seek per target gives, fewer decoded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from videopipe.media import grab, probe
from videopipe.media.grab import GrabStats, grab_frames
from videopipe.testing.media import SampleVideo, write_sample_video


@dataclass(frozen=True)
class Timeline:
    pts: list[int]  # every frame, presentation order
    keyframes: list[int]  # pts of the frames the decoder marks as keyframes
    b_frames: set[int]


def timeline(path: Path) -> Timeline:
    pts: list[int] = []
    keys: list[int] = []
    b: set[int] = set()
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            assert frame.pts is not None
            pts.append(frame.pts)
            if frame.key_frame:
                keys.append(frame.pts)
            if frame.pict_type == PictureType.B:
                b.add(frame.pts)
    return Timeline(pts, keys, b)


def seek_per_target(path: Path, tl: Timeline, targets: list[int]) -> dict[int, np.ndarray]:
    """The reference: a fresh, one-thread decoder per target, sought to the keyframe before it.

    It seeks to that keyframe's own stamp: a seek to the target itself lands on the next keyframe when the target
    is one of the last frames before it (MP4 seeks by decode time, which runs ahead of presentation time)."""
    out: dict[int, np.ndarray] = {}
    for target in targets:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            c.seek(max(k for k in tl.keyframes if k <= target), stream=stream, backward=True, any_frame=False)
            for n, frame in enumerate(c.decode(stream)):
                assert frame.pts is not None
                assert n or frame.pts <= target
                if frame.pts >= target:
                    assert frame.pts == target
                    out[target] = frame.to_ndarray(format="rgb24")
                    break
    return out


def targets_for(tl: Timeline) -> list[int]:
    """Frames a keyframe grab meets in real files: first and last, keyframes and the frame before each, B-frames,
    two targets far apart inside one GOP, one a few frames after another."""
    n = len(tl.pts)
    picks = {tl.pts[0], tl.pts[-1], tl.pts[n // 3], tl.pts[n // 3 + 3], tl.pts[(2 * n) // 3]}
    for k in tl.keyframes[1:]:
        i = tl.pts.index(k)
        picks |= {k, tl.pts[i - 1]}
    picks |= set(sorted(tl.b_frames)[:: max(1, len(tl.b_frames) // 4)])
    return sorted(picks)


def sparse_targets_for(tl: Timeline) -> list[int]:
    """Targets seconds apart, among them the frame just before the last keyframe (where an MP4 seek overshoots)."""
    n = len(tl.pts)
    before_last_key = tl.pts[tl.pts.index(tl.keyframes[-1]) - 1]
    return sorted({tl.pts[n // 5], tl.pts[n // 2], before_last_key, tl.pts[-1]})


def decoded_at_most(tl: Timeline, targets: list[int], slack_per_run: int = 12) -> int:
    """Frames from the keyframe before each target up to it (their union), plus what a threaded, reordering decoder
    reads past each target before the frame comes out."""
    need: set[int] = set()
    for t in targets:
        key = max(k for k in tl.keyframes if k <= t)
        need |= {p for p in tl.pts if key <= p <= t}
    return len(need) + slack_per_run * len(targets)


@pytest.fixture(scope="module")
def vfr_video(media_dir: Path) -> SampleVideo:
    # Frame lengths cycle 30, 50, 20, 80 ms, with cuts and a moving camera; 2-s GOPs.
    durations = (0.03, 0.05, 0.02, 0.08)
    return write_sample_video(
        media_dir / "grab_vfr.mp4",
        shots_s=(3.0, 2.5, 3.5),
        width=320,
        height=180,
        frame_durations_s=lambda i: durations[i % 4],
        seed=3,
    )


@pytest.fixture(scope="module")
def bframes_video(media_dir: Path) -> SampleVideo:
    return write_sample_video(
        media_dir / "grab_bframes.mkv", shots_s=(4.0, 3.0, 5.0), width=320, height=180, gop_s=2.0, seed=4
    )


@pytest.fixture(scope="module")
def long_gop_video(media_dir: Path) -> SampleVideo:
    # Keyframes only where the encoder sees a cut: GOPs of 9 and 11 s, as screen recordings and cameras make.
    return write_sample_video(
        media_dir / "grab_long_gop.mp4", shots_s=(9.0, 11.0), width=320, height=180, gop_s=60.0, seed=5
    )


@pytest.mark.parametrize("seek_ahead_s", [10.0, 0.5], ids=["read-through", "seek-ahead"])
@pytest.mark.parametrize("name", ["vfr_video", "bframes_video", "long_gop_video"])
def test_sweep_grabs_the_frames_a_seek_per_target_grabs(
    name: str, seek_ahead_s: float, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a short seek-ahead distance the sweep jumps forward between far targets (and meets the overshoot of
    # MP4 seeks just before a keyframe); with the default one it reads these short files through.
    monkeypatch.setattr(grab, "_SEEK_AHEAD_S", seek_ahead_s)
    video: SampleVideo = request.getfixturevalue(name)
    tl = timeline(video.path)
    assert tl.b_frames, "the encoder made no B-frames: the test would not test reordering"
    targets = targets_for(tl) if seek_ahead_s > 1 else sparse_targets_for(tl)
    reference = seek_per_target(video.path, tl, targets)

    stats = GrabStats(decoded_pts=[])
    grabbed = list(grab_frames(probe(video.path), targets, stats=stats))

    assert stats.method == "sweep"
    assert [g.pts for g in grabbed] == targets
    for g in grabbed:
        assert g.image.size == (video.width, video.height)
        assert np.array_equal(np.asarray(g.image), reference[g.pts]), f"pixels differ at pts {g.pts}"
    assert stats.decoded_pts is not None
    assert len(stats.decoded_pts) == len(set(stats.decoded_pts)), "a frame was decoded twice"
    assert stats.frames_decoded <= decoded_at_most(tl, targets)
    assert (stats.seeks > 0) == (seek_ahead_s < 1)


def test_frames_of_gops_without_a_target_are_never_decoded(bframes_video: SampleVideo) -> None:
    tl = timeline(bframes_video.path)
    gop_starts = tl.keyframes
    assert len(gop_starts) >= 5
    # One target in the middle of the third GOP only: the GOPs before it are read but never decoded.
    third = [p for p in tl.pts if gop_starts[2] <= p < gop_starts[3]]
    target = third[len(third) // 2]
    stats = GrabStats(decoded_pts=[])
    [g] = list(grab_frames(probe(bframes_video.path), [target], stats=stats))
    assert g.pts == target
    assert stats.decoded_pts is not None
    assert min(stats.decoded_pts) >= gop_starts[2]
    assert stats.packets_skipped >= tl.pts.index(gop_starts[2])
    # Frames nothing refers to (most B-frames) are skipped on the way to the target.
    assert stats.frames_decoded < third.index(target) + 1 + 12


def test_targets_far_apart_in_one_gop_decode_it_once(long_gop_video: SampleVideo) -> None:
    tl = timeline(long_gop_video.path)
    assert len(tl.keyframes) <= 3
    first_gop = [p for p in tl.pts if p < tl.keyframes[1]]
    targets = [first_gop[50], first_gop[150], first_gop[-1]]  # 4 s apart: the old grab sought for each one
    info = probe(long_gop_video.path)
    sweep, seek = GrabStats(decoded_pts=[]), GrabStats(decoded_pts=[])
    swept = list(grab_frames(info, targets, stats=sweep))
    sought = list(grab_frames(info, targets, stats=seek, method="seek"))
    assert [g.pts for g in swept] == [g.pts for g in sought] == targets
    for a, b in zip(swept, sought, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert seek.decoded_pts is not None and len(seek.decoded_pts) > len(set(seek.decoded_pts))  # re-decoded
    assert sweep.frames_decoded < seek.frames_decoded
    assert sweep.frames_decoded <= len(first_gop) + 12


def test_the_sweep_is_lazy_and_stops_after_the_last_target(long_gop_video: SampleVideo) -> None:
    tl = timeline(long_gop_video.path)
    early, late = tl.pts[10], tl.pts[-40]
    stats = GrabStats()
    frames = grab_frames(probe(long_gop_video.path), [early, late], stats=stats)
    first = next(frames)
    assert first.pts == early
    assert stats.frames_decoded <= 10 + 1 + 12  # nothing past the first target yet
    rest = list(frames)
    assert [g.pts for g in rest] == [late]
    assert stats.packets_decoded + stats.packets_skipped < len(tl.pts)  # the last 40 frames were not even read


def test_targets_past_the_end_and_between_frames(vfr_video: SampleVideo, caplog: pytest.LogCaptureFixture) -> None:
    tl = timeline(vfr_video.path)
    between = tl.pts[20] + 1  # no frame has this stamp: the next one answers, with a warning
    with caplog.at_level(logging.WARNING, logger="videopipe.media.grab"):
        got = list(grab_frames(probe(vfr_video.path), [between, tl.pts[-1] + 10_000]))
    assert [g.pts for g in got] == [tl.pts[21]]
    assert abs(got[0].t_s - vfr_video.frame_times_s[21]) < 1e-6
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "requested" in messages and "ends earlier" in messages


def test_seek_method_serves_files_without_reliable_stamps(media_dir: Path) -> None:
    video = write_sample_video(
        media_dir / "grab_bframes.avi", shots_s=(2.0, 2.0), width=320, height=180, codec="mpeg4", seed=6
    )
    info = probe(video.path)
    tl = timeline(video.path)
    targets = [tl.pts[5], tl.pts[60], tl.pts[-1]]
    stats = GrabStats()
    got = list(grab_frames(info, targets, stats=stats))
    assert stats.method == "seek"
    assert [g.pts for g in got] == targets


@pytest.mark.parametrize("suffix", [".ts", ".mp4"])
def test_random_targets_match_a_full_decode(suffix: str, media_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded random target sets (1 to 20 frames), with and without seeks ahead, against every frame of one plain
    sequential decode; MPEG-TS has no index to seek by, MP4 has 2-s GOPs and B-frames."""
    video = write_sample_video(
        media_dir / f"grab_random{suffix}", shots_s=(4.0, 3.0, 5.0), width=320, height=180, gop_s=2.0, seed=8
    )
    reference: dict[int, np.ndarray] = {}
    with av.open(str(video.path)) as c:
        for frame in c.decode(c.streams.video[0]):
            assert frame.pts is not None
            reference[frame.pts] = frame.to_ndarray(format="rgb24")
    all_pts = sorted(reference)
    info = probe(video.path)
    rng = np.random.default_rng(11)
    for _ in range(12):
        targets = sorted(int(p) for p in rng.choice(all_pts, size=int(rng.choice([1, 3, 8, 20])), replace=False))
        monkeypatch.setattr(grab, "_SEEK_AHEAD_S", float(rng.choice([0.3, 1.0, 10.0])))
        stats = GrabStats(decoded_pts=[])
        got = list(grab_frames(info, targets, stats=stats))
        assert [g.pts for g in got] == targets
        for g in got:
            assert np.array_equal(np.asarray(g.image), reference[g.pts]), f"pixels differ at pts {g.pts}"
        assert stats.decoded_pts is not None and len(stats.decoded_pts) == len(set(stats.decoded_pts))


def test_open_gop_leading_pictures_are_decoded_from_the_gop_before(media_dir: Path) -> None:
    """x264's open GOPs: after a keyframe come B-frames shown before it that refer to the GOP before; a target
    among them needs that GOP, which the sweep still holds."""
    path = media_dir / "grab_open_gop.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.options = {
            "preset": "veryfast",
            "x264-params": "open-gop=1:keyint=40:min-keyint=40:scenecut=0:bframes=3:b-adapt=0",
        }
        texture = np.random.default_rng(0).integers(0, 255, (180, 400), dtype=np.uint8)
        for i in range(200):
            y = np.roll(texture, 3 * i, axis=1)[:, :320]
            rgb = np.stack([y, y // 2, 255 - y], axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    reference: dict[int, np.ndarray] = {}
    with av.open(str(path)) as c:
        packets = [(p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
        c.seek(0)
        for frame in c.decode(c.streams.video[0]):
            assert frame.pts is not None
            reference[frame.pts] = frame.to_ndarray(format="rgb24")
    leading: list[int] = []
    for i, (key_pts, key) in enumerate(packets):
        if key and i and key_pts is not None:
            leading += [p for p, _ in packets[i + 1 : i + 6] if p is not None and p < key_pts]
    assert len(leading) >= 4, "no open GOPs: the test would not test leading pictures"
    stats = GrabStats(decoded_pts=[])
    leading.sort()
    got = list(grab_frames(probe(path), leading, stats=stats))
    assert [g.pts for g in got] == leading
    for g in got:
        assert np.array_equal(np.asarray(g.image), reference[g.pts]), f"pixels differ at pts {g.pts}"
    assert stats.decoded_pts is not None and len(stats.decoded_pts) == len(set(stats.decoded_pts))
