"""Replay sampling at chunk and episode boundaries, FIFO capacity, samplers and save/load."""

import numpy as np
import pytest

from ssmworld.dreamer.replay import ReplayBuffer


def fill(buffer, n, stream=0, episode_length=5, offset=0):
    for i in range(n):
        buffer.add(dict(
            index=np.int64(offset + i), image=np.full((2, 2), (offset + i) % 256, dtype=np.uint8),
            is_first=np.bool_(i % episode_length == 0), reward=np.float32(i)), stream=stream)


def test_sequences_are_contiguous_and_cross_chunk_and_episode_boundaries():
    buffer = ReplayBuffer(capacity=1000, chunk_length=8, seed=0)
    fill(buffer, 40)
    batch = buffer.sample(200, 6)
    assert batch["index"].shape == (200, 6) and batch["image"].dtype == np.uint8
    assert (np.diff(batch["index"], axis=1) == 1).all()  # contiguous steps of one stream
    starts = batch["index"][:, 0]
    assert ((starts % 8) > 2).any()  # some sequences cross a chunk boundary (start late in a chunk)
    assert batch["is_first"][:, 0].all()  # forced at index 0
    # inside the sequence, is_first marks the real episode starts (every 5 steps)
    np.testing.assert_array_equal(batch["is_first"][:, 1:], batch["index"][:, 1:] % 5 == 0)
    assert batch["index"].max() == 39  # the newest step is reachable


def test_streams_do_not_mix_and_short_streams_wait():
    buffer = ReplayBuffer(capacity=1000, chunk_length=8, seed=1)
    fill(buffer, 20, stream=0, offset=0)
    fill(buffer, 3, stream=1, offset=1000)  # too short for length 4
    batch = buffer.sample(100, 4)
    assert (batch["index"] < 1000).all()
    with pytest.raises(ValueError, match="no stream has 30 steps"):
        ReplayBuffer(capacity=100, chunk_length=32).sample(1, 30)


def test_fifo_capacity_evicts_oldest_chunks():
    buffer = ReplayBuffer(capacity=16, chunk_length=8, seed=2)
    fill(buffer, 30)
    assert len(buffer) <= 16
    batch = buffer.sample(100, 4)
    assert batch["index"].min() >= 16  # the retained chunks hold steps 16..29: nothing older (evicted links cut)
    assert batch["index"].max() == 29


def test_recency_sampler_prefers_new_data():
    uniform = ReplayBuffer(capacity=10_000, chunk_length=10, sampler="uniform", seed=3)
    recent = ReplayBuffer(capacity=10_000, chunk_length=10, sampler="recency", recency_half_life=100, seed=3)
    for buffer in (uniform, recent):
        fill(buffer, 2000)
    assert recent.sample(500, 4)["index"].mean() > uniform.sample(500, 4)["index"].mean() + 500
    with pytest.raises(ValueError, match="available: uniform, recency"):
        ReplayBuffer(100, 10, sampler="nosuch")


def test_save_writes_sealed_chunks_once_and_load_restores(tmp_path):
    buffer = ReplayBuffer(capacity=64, chunk_length=8, seed=4)
    fill(buffer, 20)
    buffer.save(str(tmp_path))
    sealed = tmp_path / "0.npz"
    mtime = sealed.stat().st_mtime_ns
    fill(buffer, 10, offset=20)
    buffer.save(str(tmp_path))
    assert sealed.stat().st_mtime_ns == mtime  # sealed chunks are not rewritten
    restored = ReplayBuffer(capacity=64, chunk_length=8, seed=4)
    restored.load(str(tmp_path))
    assert len(restored) == len(buffer) == 30
    layout = [(c.uid, c.stream, c.length) for c in buffer.chunks]
    assert [(c.uid, c.stream, c.length) for c in restored.chunks] == layout
    for saved, loaded in zip(buffer.chunks, restored.chunks):  # every field of every stored step
        assert set(saved.data) == set(loaded.data)
        for key in saved.data:
            np.testing.assert_array_equal(loaded.data[key][:loaded.length], saved.data[key][:saved.length])
    a, b = ReplayBuffer(64, 8, seed=9), ReplayBuffer(64, 8, seed=9)
    a.load(str(tmp_path))
    b.load(str(tmp_path))
    np.testing.assert_array_equal(a.sample(50, 6)["index"], b.sample(50, 6)["index"])
    assert (np.diff(restored.sample(50, 6)["index"], axis=1) == 1).all()  # chunk links restored
    fill(restored, 40, offset=30)  # writing continues in the stream's last chunk
    assert restored.sample(10, 6)["index"].max() >= 40


def test_dfs_probabilities_hand_computed_and_counts():
    """Drama's DFS: p_i = softmax(-n_i / tau) over valid sequences, drawn without replacement, then n_i += 1."""
    buffer = ReplayBuffer(100, 8, sampler="dfs", seed=0, dfs_temperature=10.0)
    for t in range(5):
        buffer.add({"x": np.float32(t), "is_first": np.bool_(t == 0)})
    chunks, owner, ends, probs = buffer.dfs_candidates(2)
    assert ends.tolist() == [1, 2, 3, 4]  # sequences of 2 steps end at 1..4
    np.testing.assert_allclose(probs, [0.25] * 4)
    buffer.chunks[0].visits[[1, 2]] = [10, 20]  # counted at start steps: the sequences ending at 2 and 3
    _, _, _, probs = buffer.dfs_candidates(2)
    expected = np.exp([0.0, -1.0, -2.0, 0.0])
    np.testing.assert_allclose(probs, expected / expected.sum())
    batch = buffer.sample(4, 2)  # all four, each once
    assert sorted(batch["x"][:, -1].tolist()) == [1, 2, 3, 4]
    assert buffer.chunks[0].visits[:5].tolist() == [1, 11, 21, 1, 0]
    buffer.sample(4, 2, count=False)  # an actor-critic warm-up's batch: drawn alike, not counted
    buffer.sample_contexts(2, 2, count=False)
    assert buffer.chunks[0].visits[:5].tolist() == [1, 11, 21, 1, 0] and not buffer.chunks[0].contexts.any()
    with pytest.raises(ValueError, match="without replacement"):
        buffer.sample(5, 2)
    state = buffer.sampler_state()
    other = ReplayBuffer(100, 8, sampler="dfs")
    for t in range(5):
        other.add({"x": np.float32(t), "is_first": np.bool_(t == 0)})
    buffer.chunks[0].contexts[:5] = [3, 0, 0, 0, 2]
    other.load_sampler_state(buffer.sampler_state())
    assert other.chunks[0].visits[:5].tolist() == [1, 11, 21, 1, 0]
    assert other.chunks[0].contexts[:5].tolist() == [3, 0, 0, 0, 2]
    other.load_sampler_state(state)  # a checkpoint without m_i counts (older runs) still loads
    assert other.chunks[0].visits[:5].tolist() == [1, 11, 21, 1, 0]


def test_dfs_imagination_contexts_hand_computed():
    """Contexts: p_i = softmax(-max(0, m_i / r - n_i) / tau), r = contexts per world-model batch; then m_i += 1."""
    buffer = ReplayBuffer(100, 8, sampler="dfs", seed=0, dfs_temperature=10.0)
    for t in range(6):
        buffer.add({"x": np.float32(t), "is_first": np.bool_(t == 0)})
    chunk = buffer.chunks[0]
    chunk.visits[:6] = [0, 1, 2, 0, 0, 0]  # n_i at start steps
    chunk.contexts[:6] = [8, 8, 8, 0, 40, 0]  # m_i; r = 4 -> m / r = [2, 2, 2, 0, 10, 0]
    _, _, ends, probs = buffer.dfs_candidates(3, contexts=True, ratio=4.0)
    assert ends.tolist() == [2, 3, 4, 5]  # starts 0..3
    expected = np.exp([-0.2, -0.1, 0.0, 0.0])  # -max(0, [2-0, 2-1, 2-2, 0-0]) / 10
    np.testing.assert_allclose(probs, expected / expected.sum())
    buffer.sample(2, 3)  # a world-model batch of 2 sets r = contexts / 2
    visits = chunk.visits[:6].copy()
    batch = buffer.sample_contexts(4, 3)  # all four contexts, each once; r = 4 / 2 = 2
    assert sorted(batch["x"][:, 0].tolist()) == [0, 1, 2, 3] and batch["is_first"][:, 0].all()
    assert chunk.contexts[:6].tolist() == [9, 9, 9, 1, 40, 0] and (chunk.visits[:6] == visits).all()
    uniform = ReplayBuffer(100, 8, seed=0)
    uniform.add({"x": np.float32(0), "is_first": np.bool_(True)})
    assert uniform.sample_contexts(3, 1)["x"].shape == (3, 1)


def test_dfs_prefers_rarely_sampled_sequences():
    buffer = ReplayBuffer(1000, 64, sampler="dfs", seed=1, dfs_temperature=1.0)
    for t in range(50):
        buffer.add({"x": np.float32(t), "is_first": np.bool_(t == 0)})
    for _ in range(100):  # 400 draws over 47 sequences: each old one is drawn ~8.5 times
        buffer.sample(4, 4)
    old = buffer.chunks[0].visits[0:47].copy()  # the 47 sequences start at 0..46
    for t in range(50, 60):  # new data: never sampled
        buffer.add({"x": np.float32(t), "is_first": np.bool_(False)})
    batch = buffer.sample(8, 4)
    assert (batch["x"][:, -1] >= 50).sum() == 8, batch["x"][:, -1]  # weight 1 vs e^-8.5: new sequences first
    assert old.std() < 1.5  # balanced counts (uniform sampling: Poisson, std ~2.9)


def test_dfs_counts_at_start_steps_across_chunks():
    buffer = ReplayBuffer(100, 4, sampler="dfs", seed=0)
    for t in range(6):  # chunk 0 holds steps 0..3, chunk 1 steps 4..5
        buffer.add({"x": np.float32(t), "is_first": np.bool_(t == 0)})
    buffer.chunks[0].visits[3] = 50  # the sequence 3..5 crosses into chunk 1; its count lives at step 3
    _, _, _, probs = buffer.dfs_candidates(3)
    assert probs.argmin() == 3 and np.isclose(probs[:3], probs[0]).all()  # ends 2, 3, 4, 5 -> starts 0..3
    batch = buffer.sample(4, 3)
    assert sorted(batch["x"][:, 0].tolist()) == [0, 1, 2, 3]
    assert buffer.chunks[0].visits[:4].tolist() == [1, 1, 1, 51] and buffer.chunks[1].visits[:2].tolist() == [0, 0]


def _interleaved(sampler, capacity=60, chunk_length=8, seed=0):
    """Three streams written in turn (stream 2 starts late and stays short); capacity evicts the oldest chunks, so
    some chunks lose their previous chunk."""
    buffer = ReplayBuffer(capacity, chunk_length, sampler=sampler, seed=seed)
    for t in range(40):
        for stream in (0, 1) if t < 36 else (0, 1, 2):
            buffer.add({"x": np.float32(1000 * stream + t), "is_first": np.bool_(t == 0)}, stream=stream)
    return buffer


def _valid_windows(buffer, length):
    """Brute force: every (chunk uid, last index) whose sequence of ``length`` steps is stored."""
    windows = []
    for chunk in buffer.chunks:
        history = chunk.prev.length if chunk.prev is not None else 0
        windows += [(chunk.uid, end) for end in range(chunk.length) if end + 1 + history >= length]
    return windows


def test_uniform_sampler_is_uniform_over_stored_sequences_of_interleaved_streams():
    buffer = _interleaved("uniform")
    assert any(c.prev is None and c.stream < 2 for c in buffer.chunks)  # a previous chunk evicted
    # from the stored values alone (not the chunk links): a sequence of 6 ending at x is stored iff x-5..x all are
    stored = {float(v) for c in buffer.chunks for v in c.data["x"][:c.length]}
    expected = sorted(x for x in stored if all(x - k in stored for k in range(6)))
    draws = buffer.sample(20 * len(expected), 6)["x"][:, -1]
    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == expected  # exactly the stored sequences' last steps
    assert counts.min() > 8 and counts.max() < 35  # ~20 each (binomial, sd ~4.4)
    assert (np.diff(buffer.sample(50, 6)["x"], axis=1) == 1).all()  # one stream each


def test_dfs_candidates_equal_brute_force_over_interleaved_streams():
    buffer = _interleaved("dfs", seed=3)
    rng = np.random.default_rng(0)
    for chunk in buffer.chunks:
        chunk.visits[:] = rng.integers(0, 30, chunk.visits.shape)
        chunk.contexts[:] = rng.integers(0, 60, chunk.contexts.shape)
    for contexts in (False, True):
        chunks, owner, ends, probs = buffer.dfs_candidates(6, contexts=contexts, ratio=2.0)
        got = {(chunks[i].uid, int(e)): p for i, e, p in zip(owner, ends, probs)}
        assert sorted(got) == sorted(_valid_windows(buffer, 6))
        logits = []
        for chunk in buffer.chunks:  # counts at each sequence's first step, possibly in the previous chunk
            history = chunk.prev.length if chunk.prev is not None else 0
            for end in range(chunk.length):
                if end + 1 + history < 6:
                    continue
                start = end - 5
                at, i = (chunk, start) if start >= 0 else (chunk.prev, chunk.prev.length + start)
                n, m = at.visits[i], at.contexts[i] / 2.0
                logits.append(-max(0.0, m - n) / 10.0 if contexts else -n / 10.0)
        expected = np.exp(np.array(logits) - max(logits))
        np.testing.assert_allclose([got[w] for w in _valid_windows(buffer, 6)], expected / expected.sum())
