"""LAS-AT strategy network: head shapes and sampling."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxat.models.strategy_net import StrategyNet, sample_actions


def test_small_strategy_net_heads_and_sampling():
  net = StrategyNet(head_sizes=(3, 2, 4), backbone='small')
  x = jnp.zeros((5, 8, 8, 1))
  variables = net.init(jax.random.PRNGKey(0), x, train=False)
  heads = net.apply(variables, x, train=False)
  assert [h.shape for h in heads] == [(5, 3), (5, 2), (5, 4)]
  # Near-deterministic logits: the sample is the dominant option; uniform logits cover all options.
  peaked = (jnp.tile(jnp.array([[-1e4, 0.0, -1e4]]), (5, 1)),
            jnp.zeros((2000, 4)))
  a, b = sample_actions(jax.random.PRNGKey(1), peaked)
  np.testing.assert_array_equal(np.asarray(a), [1] * 5)
  freq = np.bincount(np.asarray(b), minlength=4) / 2000
  assert np.all(np.abs(freq - 0.25) < 0.05)
