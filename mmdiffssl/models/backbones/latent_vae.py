"""The VAE of the latent families (Stable Diffusion, SDXL, DiT, PixArt): loaded offline or built
from a config, frozen, and the scaled latents the diffusion network is trained on.

    x (B, 3, H, W) in [-1, 1] --AutoencoderKL encoder, posterior mean-->
      (mean - shift_factor) * scaling_factor   (B, C_lat, H / f, W / f), f = 2 ** downsamplers

``scaling_factor`` and ``shift_factor`` are the VAE config's (0.18215 and none for the SD
1.x/2.x VAE and ``sd-vae-ft-ema``/``-mse`` used by DiT and PixArt-α; 0.13025 for SDXL's).
"""
import torch

from .diffusers_unet_backbone import build_or_load, use_sdpa


def build_vae(pretrained, config, vae_config, checkpoint=None):
    """The frozen ``AutoencoderKL`` of a folder or single file (or of ``vae_config``)."""
    vae = build_or_load('AutoencoderKL', pretrained, config, vae_config, 'vae',
                        checkpoint=checkpoint)
    vae.requires_grad_(False)
    use_sdpa(vae)
    return vae


def vae_downsampling(vae):
    """Image pixels per latent pixel (2 per encoder block with a downsampler)."""
    return 2**sum(bool(getattr(b, 'downsamplers', None)) for b in vae.encoder.down_blocks)


def scaled_latents(vae, x, autocast):
    """``(B, C_lat, H / f, W / f)`` float32 latents of ``x`` (see the module docstring).

    Args:
        vae: the ``AutoencoderKL``.
        x (Tensor): ``(B, 3, H, W)`` in [-1, 1]; a graph is built only if it requires grad.
        autocast: the autocast context the encoder runs in.
    """
    grad = torch.is_grad_enabled() and x.requires_grad
    with torch.set_grad_enabled(grad), autocast:
        latents = vae.encode(x).latent_dist.mean
    latents = latents.float()
    shift = vae.config.get('shift_factor')
    if shift is not None:
        latents = latents - shift
    return latents * float(vae.config.scaling_factor)


class LatentVAEMixin:
    """What every VAE-latent backbone shares (put before the backbone base): the VAE never
    trains, pretrained weights are reloaded from their files at construction (left out of
    run checkpoints: the VAE always, the network when frozen), and the input is RGB."""

    def _reloaded_modules(self):
        if self.pretrained is None:
            return ()
        return ('vae', self.network_attr) if self.frozen else ('vae', )

    def _always_frozen(self):
        return ('vae.', )

    def _check_input(self, x):
        if x.shape[1] != 3:
            raise ValueError(f'expected RGB images (B, 3, H, W), got shape {tuple(x.shape)}')
