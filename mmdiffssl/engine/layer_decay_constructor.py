"""Layer-wise learning-rate decay over the blocks of a diffusion backbone (any family)."""
from mmengine.optim import DefaultOptimWrapperConstructor

from mmdiffssl.models.backbones.base import DiffusionBackbone


def block_layer_ids(backbone, prefix='backbone.'):
    """Layer id of every backbone parameter for layer-wise decay, from the block table.

    Block ``b`` (its ``BlockInfo.module``) is layer ``b``; the network's parameters outside
    every block (stem, timestep and label embeddings, which feed every block) are layer 0;
    everything else in the backbone (e.g. learned text tokens) gets ``max(blocks) + 1``, the
    full lr.

    Args:
        backbone (DiffusionBackbone): the backbone.
        prefix (str): the backbone's name in the model, with the trailing dot.

    Returns:
        tuple[dict[str, int], int]: parameter name (with ``prefix``) -> layer id, and
        ``num_layers = deepest_block + 1`` (the id of the layers that keep the full lr).
    """
    num_layers = backbone.deepest_block + 1
    network = backbone.network_attr + '.'
    ids = {}
    for name, _ in backbone.named_parameters():
        layer = num_layers
        if name.startswith(network):
            index = backbone.block_table.block_of(name)
            layer = 0 if index is None else min(index, num_layers)
        ids[prefix + name] = layer
    return ids, num_layers


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus layer-wise lr decay over a diffusion backbone's
    blocks (any family: the block table says which parameters belong to which block).

    Each parameter's lr from the default constructor (base lr times any ``custom_keys``
    ``lr_mult``, e.g. ``{'backbone': dict(lr_mult=0.1)}``) is multiplied by
    ``layer_decay_rate ** (num_layers - layer_id)`` (:func:`block_layer_ids`): the deepest
    computed block gets ``rate``, block 1 gets ``rate ** max(blocks)``, the embeddings
    ``rate ** (max(blocks) + 1)``, and parameters outside the backbone (necks, heads) keep
    their lr. Weight decay is left to the default constructor's options
    (``norm_decay_mult``, ``bias_decay_mult``, ``custom_keys``).

    ``paramwise_cfg`` keys added to mmengine's:
        layer_decay_rate (float): decay per block, in (0, 1]; 1 disables the decay.
        backbone (str): attribute name of the backbone in the model (default 'backbone').

    Example::

        optim_wrapper = dict(
            constructor='LayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            paramwise_cfg=dict(layer_decay_rate=0.9, norm_decay_mult=0.0,
                               custom_keys={'backbone': dict(lr_mult=0.1)}))
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        paramwise_cfg = dict(paramwise_cfg or {})
        rate = float(paramwise_cfg.setdefault('layer_decay_rate', 1.0))
        if not 0.0 < rate <= 1.0:
            raise ValueError(f'layer_decay_rate must be in (0, 1], got {rate}')
        paramwise_cfg.setdefault('backbone', 'backbone')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_lr is None:
            raise ValueError(f'{type(self).__name__} needs optimizer.lr')
        self.layer_decay_rate = rate
        self.backbone_name = paramwise_cfg['backbone']

    def add_params(self, params, module, prefix='', is_dcn_module=None):
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # a recursive call of the default constructor
            return
        backbone = getattr(module, self.backbone_name, None)
        if not isinstance(backbone, DiffusionBackbone):
            raise TypeError(f'layer decay needs a diffusion backbone at '
                            f'.{self.backbone_name}, got {type(backbone).__name__}')
        ids, num_layers = block_layer_ids(backbone, prefix=self.backbone_name + '.')
        names = {id(p): n for n, p in module.named_parameters()}
        for group in params:
            name = names[id(group['params'][0])]
            layer = ids.get(name)
            if layer is None:
                continue
            scale = self.layer_decay_rate ** (num_layers - layer)
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['layer_id'] = layer
            group['lr_scale'] = scale
