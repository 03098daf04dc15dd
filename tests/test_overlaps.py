"""The overlap state: construction from Python lists, the reference state, and the strict state-file reader."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp


def _payload(**over):
    d = dict(Q=[[1.0, 0.0], [0.0, 1.0]], R=[[0.1, 0.0], [0.0, 0.2]], T=[[1.0, 0.0], [0.0, 1.0]], v=[1.0, 1.0],
             v_star=[1.0, 1.0])
    d.update(over)
    return d


def test_overlaps_from_python_lists_equal_the_array_state():
    """Lists (nested, ints or floats) become float arrays; the error equals the one of the array state."""
    lists = jp.Overlaps(**_payload(v=[1, 1]))
    arrays = jp.Overlaps(**{k: jnp.asarray(np.asarray(v, dtype=float)) for k, v in _payload().items()})
    for k in ("Q", "R", "T", "v", "v_star"):
        x = getattr(lists, k)
        assert isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating), k
    assert float(jp.generalisation_error(lists)) == float(jp.generalisation_error(arrays))
    np.testing.assert_array_equal(np.asarray(lists.output_weights()), [1.0, 1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="R must have shape"):
        jp.Overlaps(**_payload(R=[[0.1, 0.0]]))


def test_overlaps_as_vmap_axis_spec_is_untouched():
    """Non-array leaves (an in_axes spec) pass through the converter."""
    spec = jp.Overlaps(Q=0, R=0, T=None, v=0, v_star=None)
    assert spec.Q == 0 and spec.T is None
    s = jp.Overlaps.reference(2, 2)
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), s)
    out = jax.vmap(jp.generalisation_error, in_axes=(jp.Overlaps(Q=0, R=0, T=0, v=0, v_star=0),))(batch)
    assert out.shape == (2,)


@pytest.mark.parametrize("field,value,words", [
    ("v", ["1.0", 1.0], "got str '1.0'"),
    ("Q", [[True, 0.0], [0.0, 1.0]], "got bool True"),
    ("v_star", [1.0, None], "got NoneType None"),
    ("T", "[[1, 0], [0, 1]]", "got str"),
])
def test_state_file_refuses_strings_booleans_and_nulls(tmp_path, field, value, words):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_payload(**{field: value})))
    with pytest.raises(ValueError) as e:
        jp.load_state(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and f"field {field}" in msg and words in msg


def test_state_file_binary_folder_and_huge_second_layer(tmp_path):
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match=r"binary\.json is not a UTF-8 text file") as e:
        jp.load_state(binary)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="is a directory") as e:
        jp.load_state(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(_payload(v=[1e300, 1.0])))
    with pytest.raises(ValueError, match=r"huge\.json\.v entries must lie in .* got max \|v\| = 1e\+300"):
        jp.load_state(huge)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(_payload(v=[1, 2])))  # JSON integers are numbers
    np.testing.assert_array_equal(np.asarray(jp.load_state(ok).v), [1.0, 2.0])


def test_max_second_layer_bound_keeps_the_error_finite():
    """At the bound, the largest possible erf error 1/2 (sum |u|)^2 is still a finite float64."""
    from jaxprune._overlaps import max_second_layer

    K, M = 3, 2
    b = max_second_layer(K, M)
    worst = jp.Overlaps(Q=jnp.eye(K), R=jnp.zeros((K, M)), T=jnp.eye(M), v=jnp.full(K, b), v_star=jnp.full(M, -b))
    jp.validate_overlaps(worst)
    assert np.isfinite(float(jp.generalisation_error(worst)))
