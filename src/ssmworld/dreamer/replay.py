"""Replay: per-env-stream chunked storage of transitions and (B, T) sequence sampling.

Each env stream writes its steps into fixed-size chunks (numpy arrays, images stay uint8). A chunk links to the
previous chunk of its stream, so a sampled sequence of T <= chunk_length steps may cross a chunk boundary and episode
boundaries (``is_first`` marks starts; it is forced True at index 0 because a training sequence starts from the
core's initial state, unless the sampler is asked for its episode context: ``context`` > 0 adds the steps of the
sequence's episode before its first step, see ``episode_prefix``). Capacity is FIFO over whole chunks. Sealed chunks
never change, so a checkpoint can write each chunk once (``save`` skips chunks already on disk) and ``load`` reads them
one at a time (never two copies in memory).

Samplers pick the *last* step of a sequence: ``uniform`` over all stored steps with enough history, ``recency``
with probability decaying in the step's age (half-life ``recency_half_life`` steps), ``dfs``: Drama's dynamic
frequency-based sampling (docs/REFERENCE.md drama.md §4). Every step i keeps two counts: n_i, world-model sequences
that started at i, and m_i, imagination contexts that started at i. A world-model batch draws B distinct sequences with
p_i = softmax(-n_i / tau), then n_i += 1, so rarely trained sequences (new data) are preferred without starving old
ones. An imagination batch (``sample_contexts``) draws N distinct short contexts with
p_i = softmax(-max(0, m_i / r - n_i) / tau), r = N / B, then m_i += 1: states imagined more often (scaled) than the
world model trained on them are down-weighted.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError

Step = dict[str, np.ndarray]


@dataclass
class Chunk:
    uid: int
    stream: int
    data: dict[str, np.ndarray]
    length: int = 0  # filled steps
    saved_length: int = -1  # steps in its file at the last save
    prev: "Chunk | None" = field(default=None, repr=False)
    visits: np.ndarray | None = None  # dfs n_i: world-model sequences that started at each step, (chunk_length,)
    contexts: np.ndarray | None = None  # dfs m_i: imagination contexts that started at each step, (chunk_length,)


@dataclass
class _Layout:
    """The stored chunks as arrays, so that sampling costs numpy work over the chunks instead of a Python loop over
    them. Rebuilt when a chunk is added or evicted; the lengths of the chunks still being written are read live."""
    chunks: list[Chunk]  # oldest first
    prev_length: np.ndarray  # (n,) that chunk's length (full: a stream opens a chunk only when its last one is full)
    open: np.ndarray  # (m,) indices of the chunks still being written
    sealed_lengths: np.ndarray  # (n,) lengths at the build
    runs: list[np.ndarray]  # per stream: the indices of its linked chunks, oldest first (all full but the last)

    @classmethod
    def of(cls, chunks: deque[Chunk], current: dict[int, Chunk]) -> "_Layout":
        chunks_list = list(chunks)
        position = {id(c): i for i, c in enumerate(chunks_list)}
        prev = [position.get(id(c.prev), -1) for c in chunks_list]  # each chunk's previous one in its stream, or -1
        prev_length = np.array([c.prev.length if c.prev is not None else 0 for c in chunks_list], dtype=np.int64)
        open_ = np.array(sorted(position[id(c)] for c in current.values() if id(c) in position), dtype=np.int64)
        lengths = np.array([c.length for c in chunks_list], dtype=np.int64)
        runs: list[list[int]] = []
        run_of: dict[int, list[int]] = {}
        for i, p in enumerate(prev):
            run = run_of.pop(p) if p >= 0 else []
            if not run:
                runs.append(run)
            run.append(i)
            run_of[i] = run
        return cls(chunks_list, prev_length, open_, lengths, [np.array(r, dtype=np.int64) for r in runs])

    def lengths(self) -> np.ndarray:
        """(n,) filled steps of every chunk, now."""
        lengths = self.sealed_lengths.copy()
        lengths[self.open] = [self.chunks[i].length for i in self.open]
        return lengths


class ReplayBuffer:
    SAMPLERS = ("uniform", "recency", "dfs")

    def __init__(self, capacity: int, chunk_length: int = 256, sampler: str = "uniform",
                 recency_half_life: float = 1e5, seed: int = 0, dfs_temperature: float = 10.0):
        if sampler not in self.SAMPLERS:
            raise UserError(f"replay: unknown sampler {sampler!r}; available: {', '.join(self.SAMPLERS)}")
        if capacity < chunk_length:
            raise UserError(f"replay: capacity ({capacity}) must hold at least one chunk ({chunk_length} steps)")
        self.capacity, self.chunk_length = capacity, chunk_length
        self.sampler, self.half_life, self.temperature = sampler, recency_half_life, dfs_temperature
        self.rng = np.random.default_rng(seed)
        self.chunks: deque[Chunk] = deque()  # oldest first
        self.current: dict[int, Chunk] = {}  # stream -> chunk being written
        self.steps = 0  # stored steps
        self.next_uid = 0
        self.last_batch = 0  # size of the last world-model batch (the dfs contexts' ratio r)
        self._cached_layout: _Layout | None = None  # None after chunks were added or evicted

    def __len__(self) -> int:
        return self.steps

    # ---- writing -------------------------------------------------------------------------------------------------
    def add(self, step: Step, stream: int = 0) -> None:
        """Append one transition of env ``stream``. step: dict of arrays (no batch dim), e.g. obs/..., action,
        reward, is_first, is_last, is_terminal."""
        chunk = self.current.get(stream)
        if chunk is None or chunk.length == self.chunk_length:
            chunk = self._new_chunk(stream, step, prev=chunk)
        for key, value in step.items():
            if key not in chunk.data:
                raise KeyError(f"replay: step has key {key!r} the stream's first step did not have")
            chunk.data[key][chunk.length] = value
        chunk.length += 1
        self.steps += 1
        while self.steps > self.capacity:
            self._evict()

    def _new_chunk(self, stream: int, step: Step, prev: Chunk | None) -> Chunk:
        data = {k: np.zeros((self.chunk_length, *np.shape(v)), dtype=np.asarray(v).dtype) for k, v in step.items()}
        chunk = Chunk(self.next_uid, stream, data, prev=prev, visits=np.zeros(self.chunk_length, np.int64),
                      contexts=np.zeros(self.chunk_length, np.int64))
        self.next_uid += 1
        self._cached_layout = None
        self.chunks.append(chunk)
        self.current[stream] = chunk
        return chunk

    def _evict(self) -> None:
        old = self.chunks.popleft()
        self._cached_layout = None
        self.steps -= old.length
        for chunk in self.chunks:  # drop the link so the evicted arrays can be freed
            if chunk.prev is old:
                chunk.prev = None
        if self.current.get(old.stream) is old:
            del self.current[old.stream]

    # ---- sampling ------------------------------------------------------------------------------------------------
    def sample(self, batch: int, length: int, context: int = 0, count: bool = True) -> dict[str, np.ndarray]:
        """``batch`` sequences of ``length`` contiguous steps of one stream each: dict of (batch, length, ...).
        ``context`` > 0: also each sequence's episode context, "prefix/<key>" (batch, P, ...) (``episode_prefix``).
        ``count=False``: the dfs sampler does not count the draws as visits (data the world model does not train on)."""
        if length > self.chunk_length:
            raise ValueError(f"replay: sequence length {length} exceeds chunk_length {self.chunk_length}")
        layout = self._layout()
        lengths = layout.lengths()
        valid = (lengths > 0) & (lengths + layout.prev_length >= length)  # a chunk's last step has the history
        if not valid.any():
            raise ValueError(f"replay: no stream has {length} steps yet ({self.steps} stored)")
        if self.sampler == "dfs":
            return self._sample_dfs(batch, length, context=context, count=count)
        sizes = np.where(valid, lengths, 0).astype(np.float64)
        weights = sizes
        if self.sampler == "recency":
            ages = np.cumsum(sizes[::-1])[::-1] - sizes  # steps written after each chunk
            weights = sizes * np.exp2(-ages / self.half_life)
        picks: list[tuple[Chunk, int]] = []
        while len(picks) < batch:  # a chunk by its weight, a last step uniformly in it
            rows = self.rng.choice(len(weights), size=batch - len(picks), p=weights / weights.sum())
            ends = self.rng.integers(lengths[rows])
            enough = ends + 1 + layout.prev_length[rows] >= length  # not too close to its stream's start
            picks += [(layout.chunks[i], int(e)) for i, e in zip(rows[enough], ends[enough])]
        return self._gather(picks, length, context)

    def sample_contexts(self, n: int, length: int, context: int = 0, count: bool = True) -> dict[str, np.ndarray]:
        """``n`` imagination contexts of ``length`` steps: (n, length, ...) like ``sample``. With the dfs sampler they
        follow the m_i rule (module docstring, ratio r = n / the last world-model batch size); otherwise as
        ``sample``. ``count``: as for ``sample``."""
        if self.sampler != "dfs":
            return self.sample(n, length, context)
        return self._sample_dfs(n, length, contexts=True, context=context, count=count)

    def dfs_candidates(self, length: int, contexts: bool = False, ratio: float = 1.0
                       ) -> tuple[list[Chunk], np.ndarray, np.ndarray, np.ndarray]:
        """Every valid sequence of ``length`` steps as (chunks, chunk index (N,), last index (N,)) and its DFS
        probability (N,): softmax(-n / tau) for world-model sequences, softmax(-max(0, m / ratio - n) / tau) for
        imagination ``contexts``."""
        layout, runs, offsets, probs = self._dfs_probabilities(length, contexts, ratio)
        owner, ends = self._dfs_sequences(runs, offsets, np.arange(len(probs)), length)
        return layout.chunks, owner, ends, probs

    def _dfs_probabilities(self, length: int, contexts: bool, ratio: float
                           ) -> tuple[_Layout, list[np.ndarray], np.ndarray, np.ndarray]:
        """(layout, runs, offsets, probs): each stream's sequences are numbered from offsets[r] on, by first step
        (one stream's stored steps are contiguous: its sequences start at 0..steps - length)."""
        layout = self._layout()
        lengths = layout.lengths()
        runs, offsets, n, m = [], [0], [], []
        for run in layout.runs:
            steps = (len(run) - 1) * self.chunk_length + int(lengths[run[-1]])  # all but the last chunk are full
            if steps < length:
                continue
            runs.append(run)
            offsets.append(offsets[-1] + steps - length + 1)
            n.append(np.concatenate([layout.chunks[i].visits for i in run])[: steps - length + 1])
            if contexts:
                m.append(np.concatenate([layout.chunks[i].contexts for i in run])[: steps - length + 1])
        if not n:
            return layout, runs, np.array(offsets), np.zeros(0)
        visits = np.concatenate(n).astype(np.float64)
        if contexts:
            logits = -np.maximum(0.0, np.concatenate(m) / ratio - visits) / self.temperature
        else:
            logits = -visits / self.temperature
        probs = np.exp(logits - logits.max())
        return layout, runs, np.array(offsets), probs / probs.sum()

    def _dfs_sequences(self, runs: list[np.ndarray], offsets: np.ndarray, picks: np.ndarray, length: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(chunk index, last index) of the sequences numbered ``picks`` by ``_dfs_probabilities``."""
        owner, ends = np.zeros(len(picks), np.int64), np.zeros(len(picks), np.int64)
        which = np.searchsorted(offsets, picks, side="right") - 1
        for r, run in enumerate(runs):
            here = which == r
            last = picks[here] - offsets[r] + length - 1  # in the stream's steps
            owner[here], ends[here] = run[last // self.chunk_length], last % self.chunk_length
        return owner, ends

    def _layout(self) -> _Layout:
        if self._cached_layout is None:
            self._cached_layout = _Layout.of(self.chunks, self.current)
        return self._cached_layout

    def _sample_dfs(self, batch: int, length: int, contexts: bool = False, context: int = 0, count: bool = True
                    ) -> dict[str, np.ndarray]:
        ratio = batch / max(self.last_batch, 1) if contexts else 1.0
        layout, runs, offsets, probs = self._dfs_probabilities(length, contexts, ratio)
        if not contexts:
            self.last_batch = batch
        if batch > len(probs):
            raise ValueError(f"replay: dfs draws without replacement: {batch} sequences requested, "
                             f"{len(probs)} available")
        owner, ends = self._dfs_sequences(runs, offsets, self.rng.choice(len(probs), size=batch, replace=False,
                                                                         p=probs), length)
        picks = []
        for i, end in zip(owner.tolist(), ends.tolist()):
            chunk = layout.chunks[i]
            start = end + 1 - length  # count at the start step, which may lie in the previous chunk
            owner_chunk, index = (chunk, start) if start >= 0 else (chunk.prev, chunk.prev.length + start)
            getattr(owner_chunk, "contexts" if contexts else "visits")[index] += count
            picks.append((chunk, end))
        return self._gather(picks, length, context)

    def _gather(self, picks: list[tuple[Chunk, int]], length: int, context: int) -> dict[str, np.ndarray]:
        """The sequences of ``length`` ending at each (chunk, last index), stacked; with ``context`` > 0 each one's
        episode prefix, left-padded with zeros to the longest (is_first marks where each real prefix starts)."""
        windows = [self._window(chunk, end, length) for chunk, end in picks]
        result = {k: np.stack([w[k] for w in windows]) for k in windows[0]}
        if context <= 0:
            result["is_first"][:, 0] = True
            return result
        prefixes = [self.episode_prefix(chunk, end + 1 - length, context) for chunk, end in picks]
        width = max(len(p["is_first"]) for p in prefixes)
        for key in windows[0]:
            padded = np.zeros((len(picks), width, *result[key].shape[2:]), result[key].dtype)
            for row, prefix in enumerate(prefixes):
                n = len(prefix[key])
                if n:
                    padded[row, width - n:] = prefix[key]
            result[f"prefix/{key}"] = padded
        # a sequence without a prefix starts from the initial state: at an episode start, or where the stream's earlier
        # steps are gone (evicted) or absent
        result["is_first"][:, 0] |= np.array([len(p["is_first"]) == 0 for p in prefixes])
        return result

    def episode_prefix(self, chunk: Chunk, start: int, limit: int) -> dict[str, np.ndarray]:
        """The steps of the episode before index ``start`` of ``chunk`` (negative: in earlier chunks of its stream),
        oldest first: from the episode's first step, or the ``limit`` latest steps (then is_first is set on the
        oldest, which starts from the initial state), or as far back as the stream is stored (likewise). Empty when
        ``start`` is itself an episode start. dict of (n, ...) arrays, n <= limit."""
        while start < 0 and chunk.prev is not None:
            chunk, start = chunk.prev, start + chunk.prev.length
        if start < 0 or chunk.data["is_first"][start]:
            return {k: v[:0] for k, v in chunk.data.items()}
        pieces: list[dict[str, np.ndarray]] = []
        need, end, found = limit, start, False
        while need > 0:
            if end == 0:
                if chunk.prev is None:
                    break
                chunk, end = chunk.prev, chunk.prev.length
                continue
            begin = max(0, end - need)
            firsts = np.flatnonzero(chunk.data["is_first"][begin:end])
            if len(firsts):
                begin, found = begin + int(firsts[-1]), True
            pieces.append({k: v[begin:end] for k, v in chunk.data.items()})
            need -= end - begin
            end = begin
            if found:
                break
        if not pieces:
            return {k: v[:0] for k, v in chunk.data.items()}
        prefix = {k: np.concatenate([p[k] for p in reversed(pieces)]) for k in pieces[0]}
        if not found:
            prefix["is_first"] = prefix["is_first"].copy()
            prefix["is_first"][0] = True
        return prefix

    def sampler_state(self) -> dict[str, np.ndarray]:
        """The sampler's counters by chunk uid: "<uid>" n_i, "<uid>/contexts" m_i (for checkpoints; chunk files never
        change, counters do)."""
        state = {str(c.uid): c.visits[:c.length].copy() for c in self.chunks}
        state.update({f"{c.uid}/contexts": c.contexts[:c.length].copy() for c in self.chunks})
        return state

    def load_sampler_state(self, state: dict[str, np.ndarray]) -> None:
        for chunk in self.chunks:
            for key, counter in ((str(chunk.uid), chunk.visits), (f"{chunk.uid}/contexts", chunk.contexts)):
                counts = state.get(key)
                if counts is not None:
                    counter[:len(counts)] = counts[:chunk.length]

    @staticmethod
    def _window(chunk: Chunk, end: int, length: int) -> dict[str, np.ndarray]:
        start = end + 1 - length
        if start >= 0:
            return {k: v[start : end + 1] for k, v in chunk.data.items()}
        prev = chunk.prev
        return {k: np.concatenate([prev.data[k][prev.length + start : prev.length], v[: end + 1]])
                for k, v in chunk.data.items()}

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save(self, directory: str) -> None:
        """Write chunks as directory/<uid>.npz. Chunks unchanged since their last save are not rewritten. Each file is
        written to a temporary name and renamed, so a crash leaves no torn chunk. Files of evicted chunks stay until
        ``remove_files`` (an earlier checkpoint may still need them)."""
        os.makedirs(directory, exist_ok=True)
        for chunk in self.chunks:
            path = os.path.join(directory, f"{chunk.uid}.npz")
            if os.path.exists(path) and chunk.saved_length == chunk.length:
                continue
            meta = np.array([chunk.uid, chunk.stream, chunk.length, chunk.prev.uid if chunk.prev else -1])
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                np.savez(f, __meta__=meta, **{k: v[: chunk.length] for k, v in chunk.data.items()})
            os.replace(tmp, path)
            chunk.saved_length = chunk.length

    def remove_files(self, directory: str, keep: set[str]) -> None:
        """Delete the chunk files of ``directory`` that neither this buffer nor the chunk uids ``keep`` (those the
        retained checkpoints record) need, and temporary files a crash left."""
        if not os.path.isdir(directory):
            return
        live = {str(c.uid) for c in self.chunks} | keep
        for name in os.listdir(directory):
            if (name.endswith(".npz") and name[:-4] not in live) or name.endswith(".npz.tmp"):
                os.remove(os.path.join(directory, name))

    def lengths(self) -> dict[str, int]:
        """{chunk uid: filled steps}: what a checkpoint records so that ``load`` can restore exactly this content."""
        return {str(c.uid): c.length for c in self.chunks}

    def load(self, directory: str, lengths: dict[str, int] | None = None) -> None:
        """Replace the contents by the chunks saved in ``directory`` (read one at a time, oldest first).
        ``lengths`` (from ``lengths()`` at checkpoint time) restores exactly that content: chunks it does not list are
        skipped and chunks written further after the checkpoint are cut back."""
        self.chunks.clear()
        self.current.clear()
        self._cached_layout = None
        self.steps = 0
        by_uid: dict[int, Chunk] = {}
        if not os.path.isdir(directory):
            if lengths:
                raise UserError(f"replay: {directory} is missing (the checkpoint expects {len(lengths)} chunk(s))")
            return
        names = sorted((n for n in os.listdir(directory) if n.endswith(".npz")), key=lambda n: int(n.split(".")[0]))
        for name in names:
            if lengths is not None and name.split(".")[0] not in lengths:
                continue
            with np.load(os.path.join(directory, name), allow_pickle=False) as f:
                uid, stream, length, prev = (int(v) for v in f["__meta__"])
                if lengths is not None:
                    if lengths[str(uid)] > length:
                        raise UserError(f"replay: chunk {name} has {length} steps, the checkpoint expects "
                                         f"{lengths[str(uid)]}")
                    length = lengths[str(uid)]
                data = {}
                for key in f.files:
                    if key == "__meta__":
                        continue
                    stored = f[key]
                    data[key] = np.zeros((self.chunk_length, *stored.shape[1:]), dtype=stored.dtype)
                    data[key][:length] = stored[:length]
            chunk = Chunk(uid, stream, data, length, saved_length=-1 if lengths else length, prev=by_uid.get(prev),
                          visits=np.zeros(self.chunk_length, np.int64), contexts=np.zeros(self.chunk_length, np.int64))
            by_uid[uid] = chunk
            self.chunks.append(chunk)
            self.current[stream] = chunk
            self.steps += length
            self.next_uid = max(self.next_uid, uid + 1)
        missing = set(lengths or {}) - {str(uid) for uid in by_uid}
        if missing:
            raise UserError(f"replay: chunk file(s) {sorted(missing)} missing from {directory}")
