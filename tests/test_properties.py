"""Property tests (hypothesis): generalized Jaccard's range, symmetry and identity; the readers turn any
malformed file into a MonaError (one line, exit code), never a traceback."""

from __future__ import annotations

import gzip
import json

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mona.data.readers import read_samples
from mona.errors import MonaError
from mona.scoring.similarity import generalized_jaccard

values = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
pairs = st.integers(1, 40).flatmap(lambda n: st.tuples(arrays(np.float64, n, elements=values),
                                                       arrays(np.float64, n, elements=values)))


# Derandomized: CI runs the same examples every time; no deadline (the machine may be busy).
PROFILE = {"derandomize": True, "deadline": None, "database": None}


@settings(**PROFILE)
@given(pairs)
def test_jaccard_range_symmetry_identity(pair):
    z, p = pair
    forward = generalized_jaccard(sp.csr_matrix(z[None, :]), p)[0]
    backward = generalized_jaccard(sp.csr_matrix(p[None, :]), z)[0]
    assert 0.0 <= forward <= 1.0 + 1e-12
    assert np.isclose(forward, backward, rtol=1e-9, atol=1e-12)
    assert np.isclose(forward, generalized_jaccard(z[None, :], p)[0], rtol=1e-9, atol=1e-12)  # dense == sparse
    if z.sum() > 0:
        assert np.isclose(generalized_jaccard(sp.csr_matrix(z[None, :]), z)[0], 1.0)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=6)
rows = st.dictionaries(st.sampled_from(["id", "text", "messages", "conversations", "instruction", "input",
                                        "output", "prompt", "completion", "x"]), json_values, max_size=4)
lines = st.lists(st.one_of(rows.map(json.dumps).map(str.encode), st.binary(max_size=30)), max_size=6)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          **PROFILE)
@given(lines, st.sampled_from([b"\n", b"\r\n"]), st.sampled_from(["jsonl", "json", "jsonl.gz"]))
def test_readers_never_crash(tmp_path, content, newline, suffix):
    data = newline.join(content)
    path = tmp_path / f"pool.{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    for skip in (False, True):
        try:
            samples = read_samples(path, rejects=[] if skip else None)
        except MonaError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert all(s.plain_text().strip() for s in samples)
