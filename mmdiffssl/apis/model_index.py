"""Our classification configs by name in mmpretrain's ModelHub (``get_model``,
``list_models``, ``inference_model``, ``ImageClassificationInferencer``).

``model-index.yml`` (the repo root; ``mmdiffssl/.mim/`` in a built wheel, with the configs)
imports one OpenMMLab ``metafile.yml`` per config folder; each entry is named by its config
file's stem and declares the task (``Image Classification``), so after
:func:`register_models`::

    from mmpretrain import get_model, inference_model, list_models
    list_models('linear_adm-*')
    model = get_model('linear_adm-tiny_1xb64-2e_fashion-mnist-32px', pretrained='release.pth')
    inference_model(model, 'image.png')

Detection and segmentation configs go by path: mmdet's and mmseg's inferencers read only
their own packages' indexes.
"""
import os.path as osp

_PACKAGE = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: where model-index.yml lies: in the package (wheel install), else the source checkout.
INDEX_LOCATIONS = (osp.join(_PACKAGE, '.mim'), osp.dirname(_PACKAGE))
_REGISTERED = []


def model_index_root():
    """The folder holding ``model-index.yml`` and the ``configs/`` it points into.

    Raises:
        FileNotFoundError: neither the package nor the source checkout has one.
    """
    for root in INDEX_LOCATIONS:
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return root
    raise FileNotFoundError('no model-index.yml in ' + ' or '.join(INDEX_LOCATIONS)
                            + ': install mmdiffssl from a wheel or a source checkout')


def register_models():
    """Register the model-index in mmpretrain's ``ModelHub`` (imports mmpretrain; idempotent).

    Returns:
        list[str]: the registered model names (config file stems).
    """
    if not _REGISTERED:
        from mmpretrain.apis import ModelHub
        from modelindex.load_model_index import load
        root = model_index_root()
        index = osp.join(root, 'model-index.yml')
        ModelHub.register_model_index(index, config_prefix=root)
        index_models = load(index)
        index_models.build_models_with_collections()
        _REGISTERED.extend(sorted(m.name.lower() for m in index_models.models))
    return list(_REGISTERED)
