"""The Fashion-MNIST canvas tool: COCO json, label PNGs and the mmdet / mmseg readers.

A small set (64 x 64 canvases, 2-4 items, occlusion) is written once through
tools/dataset_converters/fashion_mnist_canvas.py from Debian's Fashion-MNIST. Every mask is
checked against the item it came from: resized from the source item, placed where the json
says, minus the pixels of the items pasted after it.
"""
import filecmp
import gzip
import json
import os
import os.path as osp

import numpy as np
import pytest

from conftest import run_tool, run_tool_result
from mmdiffssl.datasets import canvas as canvas_mod
from mmdiffssl.datasets.canvas import (FASHION_MNIST_CLASSES, CanvasSpec, load_fashion_mnist,
                                       read_idx, write_canvas_dataset)
from mmdiffssl.datasets.fashion_mnist import DEBIAN_FASHION_MNIST

cv2 = pytest.importorskip('cv2')
pytest.importorskip('pycocotools')
from pycocotools.coco import COCO  # noqa: E402

TOOL = 'tools/dataset_converters/fashion_mnist_canvas.py'
SETTINGS = dict(canvas_size=64, items=(2, 4), scale=(1.0, 1.3), train=8, val=5, seed=3)
SPEC = CanvasSpec(canvas_size=64, items_per_canvas=(2, 4), scale_range=(1.0, 1.3))
SPLITS = ('training', 'validation')


@pytest.fixture(scope='module')
def source():
    if not osp.isdir(DEBIAN_FASHION_MNIST):
        pytest.skip('needs Debian dataset-fashion-mnist (tools/setup_env.sh installs it)')
    return DEBIAN_FASHION_MNIST


@pytest.fixture(scope='module')
def canvas_root(tmp_path_factory, source):
    root = str(tmp_path_factory.mktemp('canvas') / 'set')
    s = SETTINGS
    out = run_tool([TOOL, root, '--source', source, '--canvas-size', str(s['canvas_size']),
                    '--items', *map(str, s['items']), '--scale', *map(str, s['scale']),
                    '--train-images', str(s['train']), '--val-images', str(s['val']),
                    '--seed', str(s['seed'])], env={'OMP_NUM_THREADS': '1'})
    assert f'training: {s["train"]} canvases' in out and f'validation: {s["val"]}' in out
    return root


@pytest.fixture(scope='module')
def items(source):
    return {split: load_fashion_mnist(source, prefix)
            for split, prefix in canvas_mod.CANVAS_SPLITS.items()}


def coco_of(root, split):
    return COCO(osp.join(root, 'annotations', f'instances_{split}.json'))


def read_gray(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert img is not None and img.ndim == 2, path
    return img


def placed_item(source_items, record, shape):
    """The item's scaled pixels on an empty canvas, from the json's record only."""
    out = np.zeros(shape, np.uint8)
    size, x, y = record['size'], record['x'], record['y']
    out[y:y + size, x:x + size] = cv2.resize(source_items[record['index']], (size, size),
                                             interpolation=cv2.INTER_LINEAR)
    return out


@pytest.mark.parametrize('split', SPLITS)
def test_masks_are_the_visible_item_pixels(canvas_root, items, split):
    coco = coco_of(canvas_root, split)
    images, labels = items[split]
    assert len(coco.getImgIds()) == SETTINGS['train' if split == 'training' else 'val']
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(FASHION_MNIST_CLASSES)
    occluded = 0
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        image = read_gray(osp.join(canvas_root, 'images', split, info['file_name']))
        assert image.shape == (info['height'], info['width']) == (64, 64)
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=img_id)), key=lambda a: a['id'])
        assert 2 <= len(anns) <= 4
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        covered_later = np.zeros(image.shape, bool)
        for ann, mask in reversed(list(zip(anns, masks))):   # last painted first
            record = ann['fashion_mnist']
            item = placed_item(images, record, image.shape)
            expected = (item > 0) & ~covered_later
            assert np.array_equal(mask, expected), (img_id, ann['id'])
            assert mask.any()
            assert np.array_equal(image[mask], item[mask])   # the item's own pixels show
            occluded += int(expected.sum() < (item > 0).sum())
            covered_later |= item > 0
            assert ann['category_id'] == labels[record['index']] + 1
            assert ann['iscrowd'] == 0 and ann['area'] == mask.sum()
            ys, xs = np.nonzero(mask)
            assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1]
            # min_visible=0.5 (default): at least half of every item stays visible
            assert mask.sum() >= 0.5 * (item > 0).sum()
        # black background: the image is non-zero exactly where some item is visible
        assert np.array_equal(np.logical_or.reduce(masks), image > 0)
    assert occluded > 0, 'no item was occluded: the occlusion path went untested'


@pytest.mark.parametrize('split', SPLITS)
def test_label_pngs_match_the_json(canvas_root, split):
    coco = coco_of(canvas_root, split)
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        stem = osp.splitext(info['file_name'])[0]
        label = read_gray(osp.join(canvas_root, 'annotations', split, stem + '.png'))
        expected = np.zeros(label.shape, np.uint8)
        count = np.zeros(label.shape, np.int64)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            mask = coco.annToMask(ann).astype(bool)
            expected[mask] = ann['category_id']
            count += mask
        assert count.max() == 1   # visible masks never overlap
        assert np.array_equal(label, expected), img_id
        assert label.max() <= len(FASHION_MNIST_CLASSES)


def test_same_seed_same_files_and_canvases_independent_of_count(canvas_root, source,
                                                                 tmp_path):
    again = str(tmp_path / 'again')
    write_canvas_dataset(again, dict(training=SETTINGS['train'], validation=SETTINGS['val']),
                         source=source, seed=SETTINGS['seed'], spec=SPEC)
    for dirpath, _, files in os.walk(canvas_root):
        for name in files:
            rel = osp.relpath(osp.join(dirpath, name), canvas_root)
            assert filecmp.cmp(osp.join(canvas_root, rel), osp.join(again, rel),
                               shallow=False), rel
    fewer = str(tmp_path / 'fewer')
    write_canvas_dataset(fewer, dict(training=3), source=source, seed=SETTINGS['seed'],
                         spec=SPEC)
    for i in range(3):
        for kind in ('images', 'annotations'):
            rel = osp.join(kind, 'training', f'{i:06d}.png')
            assert filecmp.cmp(osp.join(canvas_root, rel), osp.join(fewer, rel), shallow=False)
    other = str(tmp_path / 'other')
    write_canvas_dataset(other, dict(training=3), source=source, seed=SETTINGS['seed'] + 1,
                         spec=SPEC)
    rel = osp.join('images', 'training', '000000.png')
    assert not np.array_equal(read_gray(osp.join(other, rel)), read_gray(osp.join(fewer, rel)))


def test_rewriting_a_folder_leaves_no_stale_canvases(source, tmp_path):
    root = str(tmp_path / 'set')
    write_canvas_dataset(root, dict(validation=4), source=source, spec=SPEC)
    keep = tmp_path / 'set' / 'images' / 'validation' / 'notes.txt'
    keep.write_text('not a canvas')
    write_canvas_dataset(root, dict(validation=2), source=source, spec=SPEC, image_format='jpg')
    assert sorted(os.listdir(osp.join(root, 'images', 'validation'))) == [
        '000000.jpg', '000001.jpg', 'notes.txt']
    assert sorted(os.listdir(osp.join(root, 'annotations', 'validation'))) == [
        '000000.png', '000001.png']
    assert len(coco_of(root, 'validation').getImgIds()) == 2


def test_avoid_mode_keeps_items_apart_and_whole(source, tmp_path, items):
    root = str(tmp_path / 'avoid')
    spec = CanvasSpec(canvas_size=(64, 96), items_per_canvas=3, scale_range=0.8,
                      overlap='avoid')
    write_canvas_dataset(root, dict(training=6), source=source, seed=0, spec=spec)
    coco = coco_of(root, 'training')
    images = items['training'][0]
    for img_id in coco.getImgIds():
        assert coco.loadImgs(img_id)[0]['height'] == 64
        assert coco.loadImgs(img_id)[0]['width'] == 96
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert len(anns) == 3
        boxes = [a['bbox'] for a in anns]
        for i, (x0, y0, w0, h0) in enumerate(boxes):
            for x1, y1, w1, h1 in boxes[i + 1:]:
                assert x0 + w0 <= x1 or x1 + w1 <= x0 or y0 + h0 <= y1 or y1 + h1 <= y0
        for ann in anns:   # nothing covers an item: its mask is all of its pixels
            item = placed_item(images, ann['fashion_mnist'], (64, 96))
            assert ann['fashion_mnist']['size'] == round(28 * 0.8)
            assert np.array_equal(coco.annToMask(ann).astype(bool), item > 0)


def test_mmdet_coco_dataset_reads_the_set(canvas_root):
    pytest.importorskip('mmdet')
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs
    dataset = CocoDataset(
        data_root=canvas_root, ann_file='annotations/instances_validation.json',
        data_prefix=dict(img='images/validation/'), metainfo=dict(classes=FASHION_MNIST_CLASSES),
        pipeline=[LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True),
                  PackDetInputs()])
    coco = coco_of(canvas_root, 'validation')
    assert len(dataset) == SETTINGS['val']
    for i in range(len(dataset)):
        sample = dataset[i]
        img_id = sample['data_samples'].img_id
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        gt = sample['data_samples'].gt_instances
        assert tuple(sample['inputs'].shape) == (3, 64, 64)
        assert gt.labels.tolist() == [a['category_id'] - 1 for a in anns]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)]
        assert np.allclose(gt.bboxes.tensor.numpy(), boxes)
        assert np.array_equal(gt.masks.to_ndarray(), np.stack([coco.annToMask(a) for a in anns]))


def test_mmseg_ade20k_dataset_reads_the_set(canvas_root, source, tmp_path):
    pytest.importorskip('mmseg')
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs

    def build(root, **kwargs):
        return ADE20KDataset(
            data_root=root, data_prefix=dict(img_path='images/validation',
                                             seg_map_path='annotations/validation'),
            pipeline=[LoadImageFromFile(), LoadAnnotations(), PackSegInputs()], **kwargs)

    dataset = build(canvas_root, img_suffix='.png')
    assert len(dataset) == SETTINGS['val'] and dataset.reduce_zero_label
    for i in range(len(dataset)):
        sample = dataset[i]
        path = sample['data_samples'].seg_map_path
        label = read_gray(path).astype(np.int64)
        seg = sample['data_samples'].gt_sem_seg.data[0].numpy()
        assert np.array_equal(seg, np.where(label == 0, 255, label - 1))   # class k = k + 1 - 1
        assert set(np.unique(seg)) - {255} <= set(range(len(FASHION_MNIST_CLASSES)))
    # the JPEG variant is read with ADE20KDataset's default suffixes
    jpg_root = str(tmp_path / 'jpg')
    write_canvas_dataset(jpg_root, dict(validation=2), source=source, spec=SPEC,
                         image_format='jpg')
    assert len(build(jpg_root)) == 2


@pytest.mark.parametrize('kwargs, message', [
    (dict(canvas_size=40, scale_range=(1.0, 1.5)), 'do not fit on a 40 x 40 canvas'),
    (dict(canvas_size=64, items_per_canvas=6, overlap='avoid'), 'use at most 5 items'),
    (dict(canvas_size=64, items_per_canvas=(3, 2)), 'need 1 <= min <= max'),
    (dict(items_per_canvas=(1, 2, 3)), 'give one number or a (min, max) pair'),
    (dict(canvas_size='64'), "canvas_size='64': give one number or a (height, width) pair"),
    (dict(scale_range=(0, 1)), '0 < min <= max'),
    (dict(scale_range=0.01), 'must give >= 1 px'),
    (dict(overlap='blend'), "overlap='blend' is not one of ('occlude', 'avoid')"),
    (dict(min_visible=0), 'min_visible=0: must be in (0, 1]'),
    (dict(mask_threshold=255), 'mask_threshold=255'),
])
def test_bad_settings_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        CanvasSpec(**kwargs)
    assert message in str(err.value)


def test_bad_input_errors(tmp_path, source):
    with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
        write_canvas_dataset(str(tmp_path / 'a'), dict(training=1),
                             source=str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match='train-images-idx3-ubyte'):
        load_fashion_mnist(str(tmp_path), 'train')
    with pytest.raises(ValueError, match=r"splits \['test'\] are not among"):
        write_canvas_dataset(str(tmp_path / 'a'), dict(test=1), source=source)
    with pytest.raises(ValueError, match=r"num_images\['training'\]=-1"):
        write_canvas_dataset(str(tmp_path / 'a'), dict(training=-1), source=source)
    with pytest.raises(ValueError, match="image_format='gif'"):
        write_canvas_dataset(str(tmp_path / 'a'), dict(training=1), source=source,
                             image_format='gif')
    # two items as large as the canvas: the second covers most of the first, which must
    # keep half of its pixels visible
    spec = CanvasSpec(canvas_size=42, items_per_canvas=2, scale_range=1.5, min_visible=0.5,
                      max_tries=5)
    with pytest.raises(RuntimeError, match='found no place for item 2 of 2'):
        write_canvas_dataset(str(tmp_path / 'b'), dict(training=4), source=source, spec=spec)


def test_idx_reader(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b''.join(int(n).to_bytes(4, 'big') for n in data.shape)
    raw = tmp_path / 'x-idx3-ubyte'
    raw.write_bytes(header + data.tobytes())
    packed = tmp_path / 'y-idx3-ubyte.gz'
    packed.write_bytes(gzip.compress(header + data.tobytes()))
    assert np.array_equal(read_idx(str(raw)), data)
    assert np.array_equal(read_idx(str(packed)), data)
    raw.write_bytes(header + data.tobytes()[:-1])
    with pytest.raises(ValueError, match=r'header says \(2, 3, 4\) \(24 bytes\) but 23'):
        read_idx(str(raw))
    raw.write_bytes(bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, 'big') + b'\0\0\0\0')
    with pytest.raises(ValueError, match='not an idx file of unsigned bytes'):
        read_idx(str(raw))


def test_cli_reports_bad_values(tmp_path):
    # the tool's real command line (its exit status), once
    code, out = run_tool_result([TOOL, str(tmp_path / 'x'), '--canvas-size', '32', '--items',
                                 '2', '--scale', '1.0', '1.5'], env={'OMP_NUM_THREADS': '1'},
                                timeout=300, fresh_process=True)
    assert code != 0
    assert 'items up to 42 x 42 px (28 x 1.5) do not fit on a 32 x 32 canvas' in out
    assert not osp.exists(tmp_path / 'x')


def test_meta_records_the_settings(canvas_root, source):
    with open(osp.join(canvas_root, 'canvas_meta.json')) as f:
        meta = json.load(f)
    assert meta['seed'] == SETTINGS['seed'] and meta['source'] == osp.abspath(source)
    assert meta['spec']['canvas_size'] == [64, 64]
    assert meta['spec']['items_per_canvas'] == [2, 4]
    assert meta['classes'] == list(FASHION_MNIST_CLASSES)


def test_classes_are_in_mmpretrain_fashion_mnist_order():
    pytest.importorskip('mmpretrain')
    from mmpretrain.datasets import FashionMNIST
    assert FASHION_MNIST_CLASSES == tuple(FashionMNIST.METAINFO['classes'])
