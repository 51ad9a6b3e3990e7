# The folder run with the teacher at one fixed timestep (t=50) for every image.
_base_ = './repfusion-learned-t_adm-tiny_resnet18-cifar_1xb16-4e_folder-32px.py'
model = dict(timestep_policy=dict(type='FixedTimestep', timestep=50, _delete_=True))
