"""SGDConfig: one-line errors naming the field and its range, activation names, arrays (no recompilation)."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune as jp


@pytest.mark.parametrize("kw,pattern", [
    (dict(eta=0.0), r"^eta must be > 0.0 \(allowed range \(0.0, inf\)\), got 0.0$"),
    (dict(eta=0.5, sigma=-1.0), r"^sigma must be >= 0.0 \(allowed range \[0.0, inf\)\), got -1.0$"),
    (dict(eta=0.5, weight_decay=float("inf")), r"^weight_decay must be finite"),
    (dict(eta=0.5, mode="three-layer"), r"^mode must be one of 'scm', 'two-layer'; got 'three-layer'$"),
    (dict(eta=0.5, activation="relu"), r"^activation must be one of \['erf', 'linear'\], got 'relu'$"),
])
def test_bad_values_are_one_line_errors(kw, pattern):
    with pytest.raises(ValueError, match=pattern) as e:
        jp.SGDConfig(**kw)
    assert "\n" not in str(e.value)


def test_fields_are_arrays_and_activation_names_resolve():
    c = jp.SGDConfig(eta=0.5, sigma=np.float32(0.1), activation="linear", mode="two-layer")
    assert isinstance(c.activation, jp.Linear) and c.mode == "two-layer"
    for name in ("eta", "eta_v", "sigma", "weight_decay"):
        x = getattr(c, name)
        assert x.shape == () and x.dtype == jnp.result_type(float)
    batch = jp.SGDConfig(eta=jnp.asarray([0.1, 0.2]), sigma=0.0)
    assert batch.eta.shape == (2,)
    with pytest.raises(ValueError, match=r"eta must be > 0.0 .* got \[ 0.1 -0.2\]"):
        jp.SGDConfig(eta=jnp.asarray([0.1, -0.2]))
