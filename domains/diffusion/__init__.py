"""Samplers shared by the diffusion models of every domain: the DDIM step as a Gaussian policy
(`ddim.py`) and the one DDIM policy written over it (`ddim_policy.py`). A model of any domain with
a continuous state and an epsilon-predicting network subclasses `DDIMPolicy` and supplies only its
network, its conditions and how its states become designs. Likewise a model with a discrete state
subclasses `MaskedPolicy` (`masked_policy.py`, over the pieces in `masked.py`) and supplies only
its network, its categorical fields and how its states become designs."""
