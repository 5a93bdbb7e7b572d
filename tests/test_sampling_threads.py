"""Flow.sample without a seed from several threads: each call draws its own noise."""

import threading

import keras
import numpy as np

import kerasflows


def _sample_from_threads(flow, threads, calls, sample):
    """`sample(flow)`'s results from `threads` threads of `calls` calls each, started together."""
    out = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def run(i):
        start.wait()
        for _ in range(calls):
            out[i].append(sample(flow))
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return [r for rows in out for r in rows]


def test_unseeded_samples_from_threads_are_all_different_and_advance_the_seed_once_each():
    """`sample_seed.next()` reads the generator's state and then writes it: two
    threads that read before either wrote drew the same noise (4 threads x 100
    calls: 348 different sample sets, the seed 364 calls on instead of 400)."""
    keras.utils.set_random_seed(0)
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,))
    flow.sample(3)
    threads, calls = 4, 60
    before = flow.sample_seed.state.numpy().copy()
    draws = _sample_from_threads(flow, threads, calls, lambda f: f.sample(3).numpy().tobytes())
    draws += _sample_from_threads(
        flow, threads, calls, lambda f: f.sample_and_log_prob(3)[0].numpy().tobytes())
    distinct = len(set(draws))
    assert distinct == len(draws) == 2 * threads * calls
    np.testing.assert_array_equal(flow.sample_seed.state.numpy() - before,
                                  [0, 2 * threads * calls])


def test_a_flow_sampled_from_threads_still_saves_loads_and_clones(tmp_path):
    keras.utils.set_random_seed(0)
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,))
    _sample_from_threads(flow, 2, 3, lambda f: f.sample(2))
    path = tmp_path / "flow.keras"
    flow.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.sample(4, seed=7).numpy(), flow.sample(4, seed=7).numpy(),
                               rtol=1e-6)
    clone = keras.models.clone_model(flow)
    clone.set_weights(flow.get_weights())
    np.testing.assert_allclose(clone.sample(4, seed=7).numpy(), flow.sample(4, seed=7).numpy(),
                               rtol=1e-6)
    assert np.isfinite(clone.sample(4).numpy()).all()
