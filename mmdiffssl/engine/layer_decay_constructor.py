"""Layer-wise learning-rate decay over the blocks of an ADM U-Net backbone."""
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from mmdiffssl.models.backbones.adm_backbone import block_module_name

# U-Net parameters outside the numbered blocks that feed every block (layer 0)
_EMBEDDING_PREFIXES = ('time_embed.', 'label_emb.')


def adm_layer_ids(backbone, prefix='backbone.'):
    """Layer id of every backbone parameter for layer-wise decay.

    Blocks count as in ``ADMBackbone`` (1-based, execution order: input blocks, middle,
    output blocks). The timestep and label embeddings are layer 0; block ``b`` is layer
    ``b``; parameters after the deepest block the backbone computes (``max(blocks)``, they
    get no gradient) and anything else in the backbone get layer ``max(blocks) + 1``.

    Args:
        backbone (ADMBackbone): the backbone (needs ``unet.block_specs()`` and ``blocks``).
        prefix (str): the backbone's name in the model, with the trailing dot.

    Returns:
        tuple[dict[str, int], int]: parameter name (with ``prefix``) -> layer id, and
        ``num_layers = max(blocks) + 1`` (the id of the layers that keep the full lr).
    """
    specs = backbone.unet.block_specs()
    deepest = max(backbone.blocks)
    num_layers = deepest + 1
    starts = {block_module_name(spec, specs) + '.': spec.index for spec in specs}
    ids = {}
    for name, _ in backbone.named_parameters():
        layer = num_layers
        if name.startswith('unet.'):
            sub = name[len('unet.'):]
            if sub.startswith(_EMBEDDING_PREFIXES):
                layer = 0
            else:
                for start, index in starts.items():
                    if sub.startswith(start):
                        layer = min(index, num_layers)
                        break
        ids[prefix + name] = layer
    return ids, num_layers


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ADMLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus layer-wise lr decay over the U-Net's blocks.

    Each parameter's lr from the default constructor (base lr times any ``custom_keys``
    ``lr_mult``, e.g. ``{'backbone': dict(lr_mult=0.1)}``) is multiplied by
    ``layer_decay_rate ** (num_layers - layer_id)`` (:func:`adm_layer_ids`): the deepest
    computed block gets ``rate``, block 1 gets ``rate ** max(blocks)``, the embeddings
    ``rate ** (max(blocks) + 1)``, and parameters outside the backbone (necks, heads) keep
    their lr. Weight decay is left to the default constructor's options
    (``norm_decay_mult``, ``bias_decay_mult``, ``custom_keys``).

    ``paramwise_cfg`` keys added to mmengine's:
        layer_decay_rate (float): decay per block, in (0, 1]; 1 disables the decay.
        backbone (str): attribute name of the backbone in the model (default 'backbone').

    Example::

        optim_wrapper = dict(
            constructor='ADMLayerDecayOptimWrapperConstructor',
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
            raise ValueError('ADMLayerDecayOptimWrapperConstructor needs optimizer.lr')
        self.layer_decay_rate = rate
        self.backbone_name = paramwise_cfg['backbone']

    def add_params(self, params, module, prefix='', is_dcn_module=None):
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # a recursive call of the default constructor
            return
        backbone = getattr(module, self.backbone_name, None)
        if backbone is None or not hasattr(backbone, 'unet'):
            raise TypeError(f'the model has no ADM backbone at .{self.backbone_name}')
        ids, num_layers = adm_layer_ids(backbone, prefix=self.backbone_name + '.')
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
