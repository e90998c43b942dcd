"""The digest the inference plan keeps of each block of a conv's weights (kernels/digest/).

A plan sees weights edited in place by digesting them at every run and comparing with the
digests it kept (csrc/plan/inference_plan.h). So: every ISA's kernel must give the same digest
(the ISA cap may change between runs), a change of any one 8-byte word must always change it
(the sum half is a bijection of each word), and the edits people make (a sign flipped, values
swapped, a block and its zero-padded self) must change it too. The plan-level tests of edits
in place are in test_compiled_inference.py; here, how the plan cuts weights into blocks.
"""

from __future__ import annotations

import numpy as np
import pytest

import convforge
from convforge import _core
from conftest import SUPPORTED_ISAS

# Stripes are 64 bytes, rounds 1 KiB: lengths around both, an odd tail, a plan block (16 KiB).
LENGTHS = [0, 1, 3, 4, 8, 60, 63, 64, 65, 127, 128, 1000, 1023, 1024, 1025, 1088, 2047, 2048, 4100, 16384, 16388, 50001]


def digest(data: np.ndarray) -> tuple[int, int]:
    return _core._weights_digest(np.ascontiguousarray(data))


@pytest.fixture
def each_isa():
    previous = _core._isa_cap()

    def under(isa, data):
        _core._set_isa_cap(isa)
        try:
            return digest(data)
        finally:
            _core._set_isa_cap(previous)

    return under


def test_every_isa_gives_the_same_digest(each_isa, rng):
    raw = rng.integers(0, 256, 60000, dtype=np.uint8)
    for length in LENGTHS:
        for offset in (0, 1, 4, 37):  # unaligned starts
            data = raw[offset : offset + length]
            got = {isa: each_isa(isa, data) for isa in SUPPORTED_ISAS}
            assert len(set(got.values())) == 1, (length, offset, got)


def test_one_word_changed_anywhere_changes_the_digest(rng):
    # Every 8-byte word of three rounds and a tail: its low half, its high half, one bit, the
    # float sign bits (the edit `w *= -1` of one weight).
    data = rng.standard_normal(800).astype(np.float32)  # 3200 bytes: 3 rounds, 2 stripes, 8-byte tail
    base = digest(data)
    words = data.view(np.uint64)
    for i in range(words.size):
        for change in (0x1, 0xFFFFFFFF, 0x80000000_00000000, 0x00000001_00000000, 0x80000000_80000000):
            edited = words.copy()
            edited[i] ^= np.uint64(change)
            assert digest(edited) != base, (i, hex(change))


def test_structured_edits_change_the_digest(rng):
    data = rng.standard_normal(4096).astype(np.float32)  # one plan block: 16 rounds
    base = digest(data)
    seen = {base}

    def check(edited):
        d = digest(edited)
        assert d not in seen
        seen.add(d)

    stripes = data.reshape(-1, 16)  # 16 floats a stripe
    for a, b in [(0, 1), (0, 15), (3, 16), (0, 255), (100, 101)]:  # within a round, across rounds
        swapped = stripes.copy()
        swapped[[a, b]] = swapped[[b, a]]
        check(swapped)
    for a, b in [(0, 2), (0, 16), (7, 7 + 64), (0, 4094)]:  # two weights negated: a sum's blind spot
        negated = data.copy()
        negated[[a, b]] *= -1
        check(negated)
    swapped = data.copy()
    swapped[[5, 6]] = swapped[[6, 5]]  # neighbours in one word
    check(swapped)
    check(data[::-1])
    check(np.concatenate([data, np.zeros(1, np.float32)]))  # zero-padded: the length counts
    check(data[:-1])
    shifted = data.copy()
    shifted[0] += np.float32(1)
    shifted[1] -= np.float32(1)
    check(shifted)


def stripe_keys():
    """The digest's 16 x 8 stripe keys, as digest_impl.h makes them (SplitMix64 from "convforg")."""
    mask, state, keys = (1 << 64) - 1, 0x636F6E76666F7267, []
    for _ in range(16 * 8):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        keys.append(z ^ (z >> 31))
    return np.array(keys, dtype=np.uint64).reshape(16, 8)


def test_two_sign_flips_crafted_against_the_first_version_change_the_digest(rng):
    # The first version's sum half was a plain sum: two float64 sign flips in one lane of a round
    # (each adds 2^63 to its word) cancelled there, and its product half lo32(x) * hi32(x),
    # x = w ^ key, cancelled too where both words have the same lo32(x) and opposite top bits of
    # x. Such weights are built here from the keys (a second reviewer's case): ordinary floats,
    # the second's low mantissa bits chosen. The rotating sum half sees the pair.
    keys = stripe_keys()
    low = np.uint64(0xFFFFFFFF)
    for lane in range(8):
        for s1, s2 in [(0, 1), (3, 12), (0, 15)]:
            data = rng.standard_normal(128)  # one round of float64: 16 stripes of 8 words
            words = data.view(np.uint64)
            i, k = 8 * s1 + lane, 8 * s2 + lane
            k1, k2 = keys[s1, lane], keys[s2, lane]
            words[k] = (words[k] & ~low) | ((words[i] ^ k1 ^ k2) & low)  # equal lo32(w ^ key)
            top = np.uint64(1 << 63)
            if ((words[i] ^ k1) & top) == ((words[k] ^ k2) & top):
                words[k] ^= top  # opposite top bits of x: the products' changes cancel
            flipped = data.copy()
            flipped[[i, k]] *= -1
            assert digest(flipped) != digest(data), (lane, s1, s2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_sign_flips_in_one_lane_change_the_digest(dtype, rng):
    # Each flip adds 2^63 to its 64-bit word: two in the same lane of a 1 KiB round cancelled in a
    # plain sum (the first version), leaving a product half that missed them once in 2^33. Every
    # pair of flips of one lane (float64: values i and i + 8m; float32: the odd values i and
    # i + 16m) within and across rounds, on data whose low words make that product cancel too.
    data = rng.standard_normal(512 if dtype == np.float64 else 1024).astype(dtype)  # 4 KiB: 4 rounds
    base = digest(data)
    step = 8 if dtype == np.float64 else 16
    first = 3 if dtype == np.float64 else 7
    for other in range(first + step, data.size, step):
        flipped = data.copy()
        flipped[[first, other]] *= -1
        assert digest(flipped) != base, other


def test_zeros_of_different_lengths_differ():
    digests = {digest(np.zeros(n, np.uint8)) for n in range(0, 300)}
    assert len(digests) == 300


def test_random_blocks_do_not_collide(rng):
    blocks = rng.standard_normal((3000, 64)).astype(np.float32)
    assert len({digest(row) for row in blocks}) == 3000


def test_non_contiguous_data_is_refused():
    with pytest.raises(ValueError, match="C-contiguous"):
        _core._weights_digest(np.zeros((4, 4), np.float32)[:, ::2])


def one_conv_plan(w, b, side, bn):
    plan = _core.InferencePlan(w.dtype.name)
    y = plan.conv2d(plan.input([w.shape[1], side, side]), w, b, (1, 1), (1, 1, 1, 1), (1, 1), bn=bn)  # no ReLU: every edit shows
    plan.finish([y])
    return plan


def joined_blocks_plan(stem, w, b, bn):
    # A 1x1 stem (256 -> 65 channels: 66 KiB of float32 weights, so that two threads share the
    # digests in a team) and the conv under test after it, whose blocks then go to the team.
    plan = _core.InferencePlan(w.dtype.name)
    y = plan.conv2d(plan.input([256, 6, 6]), stem, None, (1, 1), (0, 0, 0, 0), (1, 1))
    y = plan.conv2d(y, w, b, (1, 1), (1, 1, 1, 1), (1, 1), bn=bn)  # no ReLU: every edit shows
    plan.finish([y])
    return plan


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_an_edit_of_any_value_is_seen_where_a_block_joins_arrays(dtype, n_threads, rng, threads):
    # A plan's block holds up to 4096 values of one conv's arrays one after another: here the
    # second conv's weights (7 x 65 x 3 x 3 = 4095 values) end one short of its first block, so
    # its bias starts in it and goes on in the next block with the four BatchNormalization
    # vectors. Every value of the vectors and the weights' last ones, edited in place, is seen at
    # the next run (on two threads, by the team's shared digests), which then has a fresh plan's
    # bits.
    convforge.set_num_threads(n_threads)
    stem = (rng.standard_normal((65, 256, 1, 1)) / 16).astype(dtype)
    w = rng.standard_normal((7, 65, 3, 3)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    mean, gamma, beta = (rng.standard_normal(7).astype(dtype) for _ in range(3))
    var = rng.uniform(0.5, 2.0, 7).astype(dtype)
    bn = (mean, var, gamma, beta, 1e-3)
    plan = joined_blocks_plan(stem, w, b, bn)
    x = rng.standard_normal((2, 256, 6, 6)).astype(dtype)
    edits = [(w, i) for i in (0, 4093, 4094)] + [(a, i) for a in (b, mean, var, gamma, beta) for i in range(7)]
    for array, index in edits:
        before = plan.run([x])[0]
        array.reshape(-1)[index] = array.reshape(-1)[index] * 1.5 + 0.25
        after = plan.run([x])[0]
        assert not np.array_equal(after, before), (array.shape, index)
        convforge.set_num_threads(1)
        np.testing.assert_array_equal(after, joined_blocks_plan(stem, w, b, bn).run([x])[0])
        convforge.set_num_threads(n_threads)


def test_the_isa_cap_changed_between_runs_keeps_the_bits_and_sees_edits(rng):
    # Digests kept by one ISA's kernel are checked by another's at the next run: the same
    # function, so nothing is made again for nothing, and an edit made then is seen.
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    plan = one_conv_plan(w, b, 8, None)
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    previous = _core._isa_cap()
    try:
        for isa in SUPPORTED_ISAS[::-1] + SUPPORTED_ISAS:
            _core._set_isa_cap(isa)
            want = one_conv_plan(w, b, 8, None).run([x])[0]
            np.testing.assert_array_equal(plan.run([x])[0], want)
            w[0, 0, 0, 0] += 0.5
            np.testing.assert_array_equal(plan.run([x])[0], one_conv_plan(w, b, 8, None).run([x])[0])
    finally:
        _core._set_isa_cap(previous)
