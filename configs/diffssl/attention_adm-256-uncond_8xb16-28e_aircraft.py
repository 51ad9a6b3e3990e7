# Fine-grained transfer to FGVC-Aircraft: attention head on frozen adm-256-uncond block 24,
# t = 150, the ImageNet recipe (lr 5e-2, plain SGD, StepLR(7, 0.1), 28 epochs, total batch 128).
_base_ = [
    '../_base_/models/diffssl_attention_adm-256-uncond.py',
    '../_base_/datasets/aircraft_diffssl-256px.py',
    '../_base_/schedules/diffssl_sgd-steplr-28e.py',
    '../_base_/default_runtime_cls.py',
]
model = dict(head=dict(num_classes=100))
optim_wrapper = dict(optimizer=dict(lr=5e-2))
