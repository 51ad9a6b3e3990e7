"""DiTBackbone: the class-conditional latent diffusion transformer DiT (Peebles & Xie) as a
feature extractor.

DiT-XL/2 (the 256 and 512 checkpoints): 28 blocks of width 1152 (16 heads of 72), patch 2 on
the ``sd-vae-ft-ema`` latents, so every block's feature is ``(B, 1152, H/16, W/16)``; 1000
ImageNet classes plus the null class (index 1000) of classifier-free guidance; trained on
DDPM's linear schedule (1e-4..0.02, 1000 steps; t counts noising steps, t = 0 nearly clean).

Weights: a local diffusers folder (``transformer/`` whose ``config.json`` names
``Transformer2DModel`` with ``norm_type='ada_norm_zero'``, which diffusers maps to
``DiTTransformer2DModel``; ``vae/``; ``scheduler/``), or the original single file
(``DiT-XL-2-256x256.pt``, facebookresearch layout, converted by
:mod:`mmdiffssl.models.unets.dit_checkpoint`; a diffusers-layout state dict works too) with
``config=`` a diffusers folder providing ``transformer/config.json`` and the VAE.

Conditioning per image (``class_label``): the null class (default: unconditional features),
a fixed class, or ``'sample'``: each image's own label, given as ``class_labels`` to
:meth:`forward` / :meth:`intermediates` (``DiffSSLClassifier`` passes the data samples'
``gt_label``; at test time that feeds the true label to the backbone, which is a teacher's
setting, not a fair probe). Labels are never dropped at random (diffusers' label embedder
drops 10 % in train mode; that is switched off).

Timestep embedding note: diffusers' ``DiTTransformer2DModel`` builds its sinusoidal timestep
features with ``downscale_freq_shift=1`` (frequencies ``exp(-ln(1e4) i / (half - 1))``) where
the original DiT divides by ``half``; features here are those of diffusers' forward.
"""
import contextlib

import torch
import torch.nn.functional as F

from mmdiffssl.models.unets.diffusers_loading import load_model, load_single_file
from mmdiffssl.models.unets.dit_checkpoint import is_original_dit, original_to_diffusers

from .transformer_backbone import LatentTransformerBackbone


class DiTBackbone(LatentTransformerBackbone):
    """Features of DiT's transformer blocks on VAE latents, at chosen blocks and timesteps.

    Args:
        pretrained (str, optional): a local diffusers DiT folder, or a single ``.pt`` /
            ``.safetensors`` file in the original (or diffusers) layout with ``config``.
        config (str, optional): with a single file, a local diffusers folder holding
            ``transformer/config.json`` and ``vae/`` (weights included).
        class_label (str | int): ``'null'`` (the null class, default), a class index in
            ``[0, num_classes)``, or ``'sample'`` (each image's label from
            ``class_labels``).
        **kwargs: :class:`~.transformer_backbone.LatentTransformerBackbone`'s
            (``transformer_config``, ``vae_config``, ``scheduler``, ``feature``,
            ``massive_channels``) and the shared ones (``blocks`` default the middle block,
            14 of 28 for DiT-XL/2; ``timesteps`` default 100; ``noise`` drawn on latents).

    Shapes:
        input ``(B, 3, H, W)`` in [-1, 1], H and W multiples of 8 p (16 for DiT-XL/2);
        ``class_labels`` ``(B,)`` integers; output one ``(B, D * T, H / 8p, W / 8p)`` map per
        block.
    """

    family = 'DiT'
    transformer_class = 'DiTTransformer2DModel'
    norm_type = 'ada_norm_zero'
    modulation_children = ('norm1', )
    final_modulation = ('proj_out_1', )
    output_layers = ('proj_out_2', )

    def __init__(self, class_label='null', **kwargs):
        self._given_labels = None
        super().__init__(**kwargs)
        self.class_label = self._check_class_label(class_label)

    @property
    def num_classes(self):
        """Classes of the label embedder (the null class is index ``num_classes``)."""
        return int(self.transformer.config.num_embeds_ada_norm)

    def _check_class_label(self, label):
        if label in ('null', 'sample'):
            return label
        if isinstance(label, int) and not isinstance(label, bool) and \
                0 <= label < self.num_classes:
            return label
        raise ValueError(f"class_label={label!r} is not allowed: give 'null', 'sample' or a "
                         f'class index in [0, {self.num_classes})')

    def _load_transformer(self, layout):
        if layout == 'file':
            state = load_single_file(self.pretrained)
            if is_original_dit(state):
                state = original_to_diffusers(state)
            model = load_model(self.transformer_class, self.pretrained, 'transformer',
                               config=self.config, checkpoint=state)
        else:
            model = super()._load_transformer(layout)
        for block in model.transformer_blocks:
            block.norm1.emb.class_embedder.dropout_prob = 0.0   # no random label drops
        return model

    def condition_key(self):
        return dict(class_label=self.class_label)

    # ------------------------------------------------------------------ labels
    @contextlib.contextmanager
    def given_class_labels(self, class_labels):
        """Use ``class_labels`` ``(B,)`` for the calls inside (``class_label='sample'``; other
        modes ignore them); None keeps the labels of an enclosing call."""
        if class_labels is None:
            yield
            return
        if not torch.is_tensor(class_labels) or class_labels.dim() != 1 or \
                class_labels.is_floating_point():
            raise ValueError(f'class_labels must be a (B,) integer tensor, got {class_labels!r}')
        bad = class_labels[(class_labels < 0) | (class_labels > self.num_classes)]
        if len(bad):
            raise ValueError(f'class_labels {bad.tolist()} are outside [0, {self.num_classes}] '
                             f'(index {self.num_classes} is the null class)')
        previous, self._given_labels = self._given_labels, class_labels
        try:
            yield
        finally:
            self._given_labels = previous

    def _labels(self, count, device):
        if self.class_label != 'sample':
            value = self.num_classes if self.class_label == 'null' else self.class_label
            return torch.full((count, ), value, device=device, dtype=torch.long)
        labels = self._given_labels
        if labels is None:
            raise ValueError("class_label='sample' needs each image's label: pass "
                             'class_labels=(B,) to forward/intermediates (DiffSSLClassifier '
                             "passes the data samples' gt_label)")
        if count % len(labels):
            raise ValueError(f'{len(labels)} class labels for a batch of {count} '
                             '(images x timesteps)')
        return labels.to(device=device, dtype=torch.long).repeat(count // len(labels))

    def forward(self, x, class_labels=None):
        """``(B, 3, H, W)`` in [-1, 1] (and ``(B,)`` labels) -> tuple of fused features."""
        with self.given_class_labels(class_labels):
            return super().forward(x)

    def intermediates(self, x, *args, class_labels=None, **kwargs):
        """:meth:`~.base.DiffusionBackbone.intermediates` with optional ``(B,)`` labels."""
        with self.given_class_labels(class_labels):
            return super().intermediates(x, *args, **kwargs)

    def intermediates_at(self, x, t, *args, class_labels=None, **kwargs):
        """:meth:`~.base.DiffusionBackbone.intermediates_at` with optional ``(B,)`` labels."""
        with self.given_class_labels(class_labels):
            return super().intermediates_at(x, t, *args, **kwargs)

    # ------------------------------------------------------------------ forward
    def _conditioning(self, x_t, t_batch):
        return dict(timestep=t_batch, class_labels=self._labels(len(t_batch), x_t.device))

    def _block_kwargs(self, cond):
        return cond

    def _modulate(self, index, tokens, cond):
        blocks = self.transformer.transformer_blocks
        if index < len(self.block_table):
            return blocks[index].norm1(tokens, cond['timestep'], cond['class_labels'],
                                       hidden_dtype=tokens.dtype)[0]
        emb = blocks[0].norm1.emb(cond['timestep'], cond['class_labels'],
                                  hidden_dtype=tokens.dtype)
        shift, scale = self.transformer.proj_out_1(F.silu(emb)).chunk(2, dim=1)
        return self.transformer.norm_out(tokens) * (1 + scale[:, None]) + shift[:, None]
