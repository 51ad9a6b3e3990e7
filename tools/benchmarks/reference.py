"""OpenAI's guided-diffusion ``UNetModel``, run the way the paper's code runs it.

The model is built by ``guided_diffusion.script_util.create_model`` from the published
flags; with ``use_fp16`` its torso is converted by ``convert_to_fp16()`` (on GPUs). Each
timestep is one full forward under ``torch.no_grad()`` of ``diffusion.q_sample(x, t)``
(fresh ``randn_like`` noise), and block features are read by forward hooks.
"""
from __future__ import annotations

import contextlib
import inspect
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor



def import_guided_diffusion():
    """``guided_diffusion.script_util``, with a clear error if it is missing."""
    try:
        with warnings.catch_warnings():  # its torch.cuda.amp decorators are deprecated
            warnings.simplefilter('ignore', FutureWarning)
            from guided_diffusion import script_util
    except ImportError as err:
        raise ImportError('the reference side needs OpenAI\'s guided_diffusion package: '
                          'pip install guided-diffusion-sdk==1.0.0') from err
    return script_util


def _flag_string(value):
    """create_model parses ``'1,1,2'``-style strings: turn sequences into one."""
    if isinstance(value, str):
        return value
    return ','.join(str(v) for v in value)


class GuidedDiffusionReference:
    """The reference feature extractor.

    Args:
        flags (dict): complete guided-diffusion flags (``adm_flags_from``).
        blocks (Sequence[int]): blocks whose outputs the hooks keep (our numbering, which
            maps onto the same ``input_blocks.N``/``middle_block``/``output_blocks.N``
            module names).
        block_table (BlockTable): our backbone's block table (``BlockInfo.name`` is the
            module name in guided-diffusion's model too).
        fp16 (bool): build with ``use_fp16=True``; call :meth:`convert_to_fp16` after the
            weights are loaded (and after any fp32 comparison).
        class_label (int, optional): label of every image for class-conditional archs.
    """

    def __init__(self, flags, blocks: Sequence[int], block_table, fp16: bool = False,
                 class_label: Optional[int] = None):
        script_util = import_guided_diffusion()
        names = inspect.signature(script_util.create_model).parameters
        kwargs = {k: flags[k] for k in names if k in flags}
        kwargs['channel_mult'] = _flag_string(kwargs['channel_mult'])
        kwargs['attention_resolutions'] = _flag_string(kwargs['attention_resolutions'])
        kwargs['use_fp16'] = fp16
        self.model = script_util.create_model(**kwargs).eval()
        self.diffusion = script_util.create_gaussian_diffusion(
            steps=flags['diffusion_steps'], noise_schedule=flags['noise_schedule'],
            learn_sigma=flags['learn_sigma'])
        self.fp16 = fp16
        self.converted = False
        if flags['class_cond'] and class_label is None:
            raise ValueError('this arch is class-conditional: give class_label')
        self.class_label = class_label if flags['class_cond'] else None
        self.blocks = tuple(blocks)
        self._store = {}
        for block in self.blocks:
            module = self.model.get_submodule(block_table.row(block).name)
            module.register_forward_hook(self._keeper(block))

    def _keeper(self, block):
        def hook(module, inputs, output):
            self._store[block] = output
        return hook

    def to(self, device):
        self.model.to(device)
        return self

    def convert_to_fp16(self):
        """guided-diffusion's own fp16 conversion of the torso (the paper's ``use_fp16``)."""
        if self.fp16 and not self.converted:
            self.model.convert_to_fp16()
            self.converted = True

    @property
    def dtype(self) -> str:
        return 'fp16' if self.converted else 'fp32'

    @contextlib.contextmanager
    def fp32(self):
        """Run the (not yet converted) model in fp32 although it was built with use_fp16."""
        if self.converted:
            raise RuntimeError('the torso is already fp16: compare in fp32 before converting')
        saved = self.model.dtype
        self.model.dtype = torch.float32
        try:
            yield self
        finally:
            self.model.dtype = saved

    @torch.no_grad()
    def features(self, x: Tensor, timesteps: Sequence[int], noise: Optional[Tensor] = None,
                 stack: bool = True):
        """One full forward per timestep of ``q_sample(x, t)``; the hooked block outputs.

        Args:
            x: ``(B, 3, H, W)`` in [-1, 1].
            timesteps: diffusion timesteps.
            noise: q_sample noise shaped like ``x``; fresh ``randn_like`` noise if None.
            stack: return ``{block: (T, B, C, H, W)}`` in float32; else a list (one per
                timestep) of ``{block: output}`` as the model produced them (no copies).
        """
        batch = x.shape[0]
        y = None
        if self.class_label is not None:
            y = torch.full((batch, ), self.class_label, dtype=torch.long, device=x.device)
        per_t = []
        for t in timesteps:
            t_batch = torch.full((batch, ), int(t), dtype=torch.long, device=x.device)
            x_t = self.diffusion.q_sample(x, t_batch, noise=noise)
            self._store = {}
            self.model(x_t, t_batch, y=y)
            per_t.append(self._store)
        self._store = {}
        if not stack:
            return per_t
        return {b: torch.stack([f[b].float() for f in per_t]) for b in self.blocks}
