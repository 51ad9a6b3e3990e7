# The folder run with each image's timestep drawn uniformly from [0, 1000).
_base_ = './repfusion-learned-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py'
model = dict(timestep_policy=dict(type='UniformTimestep', low=0, high=1000, _delete_=True))
