"""Tiny deep state-space models shared by the local-scaling and seasonal-lag tests (loaded by file path: the
tests run with ``--import-mode=importlib``)."""

from pyroseq.models import DDSSM, DKF, LatentDiffusionSSM

SMALL = dict(rnn_dim=8, hidden_dim=8)
#: factories of DKF, DDSSM and LatentDiffusionSSM with small networks; keyword arguments go to the constructor
MODELS = {
    "dkf": lambda **kw: DKF(transition_dim=8, **SMALL, **kw),
    "ddssm": lambda **kw: DDSSM(denoiser_dim=8, denoiser_blocks=1, num_steps=3, **SMALL, **kw),
    "latent_diffusion": lambda **kw: LatentDiffusionSSM(
        length=8, backbone="dimts", emission_num_steps=3, num_steps=3, denoiser_dim=8,
        emission_net_kwargs=dict(hidden_dim=8, d_state=4), **SMALL, **kw),
}
