"""half_to_float: the same values as NumPy's float16 -> float32 cast, bit for bit."""

import numpy as np

from npdl.data.half import half_to_float
from npdl.data.transforms import AsFloat


def test_every_float16_converts_exactly_like_astype():
    every = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = every[np.isfinite(every)]
    converted = half_to_float(finite.reshape(-1, 8))
    expected = finite.astype(np.float32).reshape(-1, 8)
    np.testing.assert_array_equal(converted.view(np.uint32), expected.view(np.uint32))
    assert converted.dtype == np.float32 and converted.shape == (len(finite) // 8, 8)


def test_infinities_and_nans_take_numpys_cast():
    values = np.array([[1.5, np.inf], [-np.inf, np.nan], [-0.0, 6e-8]], dtype=np.float16)
    converted = half_to_float(values)
    np.testing.assert_array_equal(
        converted.view(np.uint32), values.astype(np.float32).view(np.uint32)
    )


def test_as_float_takes_the_fast_path_and_leaves_its_input_alone():
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((4, 32, 32, 3)).astype(np.float16)
    batch.flags.writeable = False
    out = AsFloat()(batch)
    np.testing.assert_array_equal(out, batch.astype(np.float32))
    assert out.dtype == np.float32 and not np.shares_memory(out, batch)
    strided = batch[:, ::2]  # not contiguous
    np.testing.assert_array_equal(AsFloat()(strided), strided.astype(np.float32))
