"""A universal model: one prior-conditioned network for every task a clinic has adapted (README: Universal model)."""
