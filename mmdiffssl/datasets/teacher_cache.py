"""Cached teacher features for distillation at a fixed timestep (RepFusion with ``FixedTimestep``).

The student still sees images (through its own, possibly random, pipeline); the teacher's
block feature of each image comes from a :class:`CachedFeatureDataset` filled once with the
teacher at that block and timestep, from the same images through ``teacher_pipeline``
(deterministic: the cache holds one feature per image). With augmentation in the student's
pipeline the cached target is the feature of the un-augmented image, the usual offline
distillation approximation; with the same deterministic pipeline on both sides cached and
online training match (up to fp16 rounding of the targets).
"""
import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from .feature_cache import CachedFeatureDataset, sample_id


class TeacherFeatureDataset(Dataset):
    """An image dataset whose samples also carry the teacher's cached feature.

    Args:
        dataset (dict): the student's image dataset config (with its pipeline).
        teacher (dict): the frozen teacher backbone config, with ``blocks`` the one distilled
            block and ``timesteps`` the one fixed timestep.
        data_preprocessor (dict): the distiller's data preprocessor config (the pixels the
            teacher sees).
        cache_root (str): folder holding the caches.
        teacher_pipeline (list[dict], optional): the pipeline of the cached images; default
            the dataset's own.
        pool (int, optional): adaptive average pool of the cached map (1 for 'pooled_mse');
            None keeps the full map (then ``input_size`` is needed).
        input_size (tuple, optional): ``(H, W)`` of the teacher's input, without ``pool``.
        batch_size (int): images per teacher forward while filling.

    Each item is the image dataset's item; its ``data_samples`` gains ``teacher_feature``,
    an fp16 ``(C, h, w)`` tensor (``h = w = pool`` when pooled).
    """

    def __init__(self, dataset, teacher, data_preprocessor, cache_root, teacher_pipeline=None,
                 pool=None, input_size=None, batch_size=32):
        super().__init__()
        outputs = len(teacher.get('blocks', ())) + len(teacher.get('taps', ()))
        if outputs != 1 or len(teacher.get('timesteps', ())) != 1:
            raise ValueError('the teacher cache holds one block (or tap) at one timestep: give '
                             f"teacher blocks (or taps) and timesteps of length 1, got blocks "
                             f"{teacher.get('blocks')}, taps {teacher.get('taps', ())} and "
                             f"timesteps {teacher.get('timesteps')}")
        self.dataset = DATASETS.build(dataset)
        cached = dict(dataset)
        if teacher_pipeline is not None:
            cached['pipeline'] = teacher_pipeline
        # building (and filling) the cache must not shift the training's random stream:
        # the Runner initialises the student's weights after building the datasets
        with torch.random.fork_rng(devices=[]):
            self.cache = CachedFeatureDataset(cached, teacher, data_preprocessor, cache_root,
                                              pool=pool, input_size=input_size,
                                              batch_size=batch_size)
        if len(self.cache) != len(self.dataset):
            raise ValueError(f'the teacher cache has {len(self.cache)} images, the student '
                             f'dataset {len(self.dataset)}')
        for index in (0, len(self.dataset) - 1):
            if sample_id(self.dataset, index) != sample_id(self.cache.dataset, index):
                raise ValueError(f'sample {index} differs between the student dataset and '
                                 'the teacher cache: they must list the same images in order')
        (_, channels, height, width), = self.cache.layout
        self.feature_shape = (channels, height, width)
        self.metainfo = self.dataset.metainfo

    def __len__(self):
        return len(self.dataset)

    def get_data_info(self, index):
        return self.dataset.get_data_info(index)

    def __getitem__(self, index):
        item = self.dataset[index]
        row = self.cache.read_rows([index])[0]
        item['data_samples'].set_field(row.view(self.feature_shape), 'teacher_feature')
        return item
